package target

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/account"
	"github.com/nhi-dev/scim-operator/internal/breaker"
	"github.com/nhi-dev/scim-operator/internal/scim"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// orphanNamesShown is how many orphans' userNames status.orphans lists.
const orphanNamesShown = 10

// orphanPolicy returns the target's orphan policy. Unset, it is
// Report on a ScimTarget and Deactivate on a ClusterScimTarget: an account whose identity
// went without revocation (its finalizer removed by hand, force-orphan) does not stay active
// on a shared target.
func orphanPolicy(t *targets.Target) scimv1.OrphanPolicy {
	if o := t.Spec.Orphans; o != nil && o.Policy != "" {
		return o.Policy
	}
	if t.ClusterScoped() {
		return scimv1.OrphanPolicyDeactivate
	}
	return scimv1.OrphanPolicyReport
}

// orphanPolicyDefaulted reports a target whose orphan policy is its kind's default.
func orphanPolicyDefaulted(t *targets.Target) bool {
	return t.Spec.Orphans == nil || t.Spec.Orphans.Policy == ""
}

// cleanOrphans applies the orphan policy to each orphan through the account.Deprovisioner (deactivated
// first, charged to the breaker, each write proven by a fresh read of the account). Where the
// breaker pauses one bucket (a namespace's share, or the shared one), the orphans of that
// bucket wait for the next scan and the others are cleaned up: one namespace's used-up share
// never holds back another's. An orphan that changed since the list is skipped and reported
// in an Event, and so are the orphans the breaker held back. Under a ClusterScimTarget's
// default policy only the orphans of the namespaces the target allows are deactivated; the
// others are reported. It returns the number of orphans acted on.
func (r *Reconciler) cleanOrphans(ctx context.Context, t *targets.Target, c *scim.Client, orphans []scim.Resource, policy scimv1.OrphanPolicy) (int, error) {
	acted := 0
	pass := &cleanup{paused: map[string]bool{}}
	defer r.reportCleanup(t, pass)
	scoped := t.ClusterScoped() && orphanPolicyDefaulted(t)
	for _, u := range orphans {
		if active, present := u.Active(); policy == scimv1.OrphanPolicyDeactivate && present && !active {
			continue
		}
		if scoped {
			if allowed, err := r.orphanInScope(ctx, t, u); err != nil {
				return acted, err
			} else if !allowed {
				continue
			}
		}
		bucket, err := r.Deprovisioner.OrphanBucket(ctx, t, u.ExternalID())
		if err != nil {
			return acted, err
		}
		if pass.paused[bucket] {
			pass.held++
			continue
		}
		out, err := r.Deprovisioner.Orphan(ctx, t, c, u, policy)
		var changed *account.OrphanChangedError
		var open *breaker.OpenError
		switch {
		case errors.As(err, &changed):
			pass.skipped = append(pass.skipped, fmt.Sprintf("%q: %s", scim.Sanitize(u.UserName(), 256), changed.Error()))
			continue
		case errors.As(err, &open):
			// The bucket charged may be the shared one (the window lists as many namespaces
			// as it may): then this orphan's namespace is held back with it.
			pass.paused[bucket], pass.paused[open.Namespace] = true, true
			pass.held++
			continue
		case err != nil:
			return acted, fmt.Errorf("%s orphaned account %q: %w", strings.ToLower(string(policy)), scim.Sanitize(u.UserName(), 256), err)
		}
		if out == account.OrphanActed {
			acted++
		}
	}
	return acted, nil
}

// cleanup is what one pass of the orphan clean-up left alone.
type cleanup struct {
	skipped []string        // orphans that changed since the sweep listed them
	paused  map[string]bool // breaker buckets paused in this pass
	held    int             // orphans left for the next scan because of a paused bucket
}

// reportCleanup tells in Events what a clean-up pass left alone, and why.
func (r *Reconciler) reportCleanup(t *targets.Target, pass *cleanup) {
	if len(pass.skipped) > 0 {
		r.Recorder.Eventf(t.Object, nil, "Warning", "OrphanSkipped", "Cleanup",
			"%d orphaned account(s) changed since the sweep listed them and were left alone (the next sweep judges them again): %s",
			len(pass.skipped), strings.Join(pass.skipped[:min(len(pass.skipped), orphanNamesShown)], "; "))
	}
	if pass.held > 0 {
		names := slices.Sorted(maps.Keys(pass.paused))
		shown := make([]string, 0, min(len(names), orphanNamesShown))
		for _, n := range names[:min(len(names), orphanNamesShown)] {
			shown = append(shown, breaker.BucketName(n))
		}
		r.Recorder.Eventf(t.Object, nil, "Warning", "OrphansPaused", "Cleanup",
			"%d orphaned account(s) were not acted on: the circuit breaker paused the share of namespace(s) %s (the next sweep continues; the other namespaces were cleaned up)",
			pass.held, strings.Join(shown, ", "))
	}
}

// orphanInScope reports whether the orphan's namespace (from its externalId) is one the
// ClusterScimTarget allows.
func (r *Reconciler) orphanInScope(ctx context.Context, t *targets.Target, u scim.Resource) (bool, error) {
	rest, _ := strings.CutPrefix(u.ExternalID(), r.ClusterID+"/")
	ns, _, _ := strings.Cut(rest, "/")
	refusal, err := targets.NamespaceAllowed(ctx, r.Client, t, ns)
	if apierrors.IsNotFound(err) {
		return false, nil // a namespace that is gone is allowed by no selector
	}
	return err == nil && refusal == "", err
}
