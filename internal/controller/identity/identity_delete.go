package identity

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/account"
	"github.com/nhi-dev/scim-operator/internal/outcome"
	"github.com/nhi-dev/scim-operator/internal/status"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// reconcileDelete deprovisions every account, then releases the finalizer. done reports that
// the finalizer was removed (the object may be gone).
func (r *Reconciler) reconcileDelete(ctx context.Context, si *scimv1.ServiceIdentity) (ctrl.Result, bool, error) {
	log := logf.FromContext(ctx)
	if !controllerutil.ContainsFinalizer(si, scimv1.DeprovisionFinalizer) {
		return ctrl.Result{}, true, nil
	}
	if si.Annotations[scimv1.ForceOrphanAnnotation] == "true" {
		r.Recorder.Eventf(si, nil, "Warning", "ForceOrphaned", "Deprovision",
			"Annotation %s=true: finalizer released without deprovisioning; accounts may remain on the targets", scimv1.ForceOrphanAnnotation)
		log.Info("Finalizer released by annotation; accounts left on targets", "annotation", scimv1.ForceOrphanAnnotation)
		if err := r.removeFinalizer(ctx, si); err != nil {
			return ctrl.Result{}, false, err
		}
		r.forgetIdentity(si)
		return ctrl.Result{}, true, nil
	}

	before := si.DeepCopy()
	if outcomes, _ := r.Deprovisioner.Identity(ctx, si, account.Revocation{Cause: account.CauseRetired, Kill: account.Killed(si)}); len(outcomes) > 0 {
		res, err := r.deprovisionBlocked(si, outcomes, "Waiting to deprovision (finalizer "+scimv1.DeprovisionFinalizer+
			" kept; set annotation "+scimv1.ForceOrphanAnnotation+"=true to release it without deprovisioning)")
		return res, false, err
	}
	now := metav1.NewTime(r.now())
	si.Status.DeprovisionedAt = &now
	why := ""
	if owner, _ := r.ownerRetired(ctx, si); owner != "" {
		why = " (" + owner + ")"
	}
	if planned := plannedRevocations(si); len(planned) > 0 {
		r.Recorder.Eventf(si, nil, "Normal", "WouldDeprovision", "Deprovision",
			"Observe mode: nothing was written; revoking account %q would have done: %s", si.EffectiveUserName(), status.Truncate(strings.Join(planned, "; "), 768))
	}
	if active := account.StillActive(si); len(active) > 0 {
		r.Recorder.Eventf(si, nil, "Warning", scimv1.ReasonAccountsLeftActive, "Deprovision", "Account %q is still active on %s%s: %s",
			si.EffectiveUserName(), strings.Join(active, ", "), why, status.Truncate(account.EvidenceSummary(si), 768))
	} else {
		r.Recorder.Eventf(si, nil, "Normal", "Deprovisioned", "Deprovision", "Account %q revoked on every target%s: %s", si.EffectiveUserName(), why,
			status.Truncate(account.EvidenceSummary(si), 768))
	}
	// The identity outlives this finalizer while SecurityEventsFinalizer holds it: its status
	// is the outbox of the tokens just recorded with the evidence, written before the
	// finalizer goes so that the security-event controller never sees the identity without
	// them (the deferred status write is skipped once the finalizer is released).
	if controllerutil.ContainsFinalizer(si, scimv1.SecurityEventsFinalizer) && !equality.Semantic.DeepEqual(before.Status, si.Status) {
		if err := status.Patch(ctx, r, si, before, false); err != nil {
			return ctrl.Result{}, false, fmt.Errorf("recording the revocation before releasing the finalizer: %w", err)
		}
	}
	if err := r.removeFinalizer(ctx, si); err != nil {
		return ctrl.Result{}, false, err
	}
	// retired and verified go now; confirmed stays until the cache no longer has the identity
	// (NotFound above), so a pass on a copy from before the finalizer went cannot deprovision again.
	r.forgetIdentity(si)
	return ctrl.Result{}, true, nil
}

// deprovisionBlocked reports targets that did not confirm and schedules the retry.
func (r *Reconciler) deprovisionBlocked(si *scimv1.ServiceIdentity, outcomes map[string]outcome.Outcome, prefix string) (ctrl.Result, error) {
	f := outcome.Fold(outcomes)
	msgs := append(f.Stalled, f.Transient...)
	slices.Sort(msgs)
	msg := prefix + ": " + strings.Join(msgs, "; ")
	gen := si.Generation
	status.Set(&si.Status.Conditions, gen, scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonDeprovisionBlocked, msg)
	status.Set(&si.Status.Conditions, gen, scimv1.ConditionReconciling, metav1.ConditionTrue, scimv1.ReasonDeprovisioning, msg)
	if len(f.Errs) > 0 {
		return ctrl.Result{}, errors.Join(f.Errs...)
	}
	if f.RetryAfter == 0 {
		// Permanent refusals are still retried, slowly: the target may be fixed.
		return ctrl.Result{RequeueAfter: time.Minute}, nil
	}
	return ctrl.Result{RequeueAfter: f.RetryAfter}, nil
}

// identityKeys is what this process keys its memory of one identity by: its UID and its
// (identity, target) keys. It is kept per identity name, so that an identity seen gone
// (NotFound) is forgotten whichever way it went (its finalizer removed by hand, force-orphan).
type identityKeys struct {
	uid     types.UID
	targets []string // verifiedKeys of its status entries
	refs    []string // verifiedKeys of its spec's references
}

func identityKeysOf(si *scimv1.ServiceIdentity) identityKeys {
	k := identityKeys{uid: si.UID}
	for _, e := range si.Status.Targets {
		k.targets = append(k.targets, targets.VerifiedKey(si, targets.Key(e.Kind, si.Namespace, e.Name)))
	}
	for _, ref := range si.Spec.TargetRefs {
		k.refs = append(k.refs, targets.VerifiedKey(si, targets.RefKey(ref, si.Namespace)))
	}
	return k
}

// forgetIdentity drops what this process remembers of an identity that is gone.
func (r *Reconciler) forgetIdentity(si *scimv1.ServiceIdentity) {
	for _, key := range r.Flags.Targets(si) { // strays included
		r.Flags.Clear(targets.VerifiedKey(si, key))
	}
	r.forgetKeys(identityKeysOf(si))
	r.memory.known.Delete(client.ObjectKeyFromObject(si))
}

func (r *Reconciler) forgetKeys(k identityKeys) {
	r.memory.retired.Delete(k.uid)
	r.memory.resyncRequests.Delete(k.uid)
	for _, key := range k.targets {
		r.memory.withdrawn.Delete(key)
		r.memory.verified.Delete(key)
		r.Flags.Clear(key)
	}
	for _, key := range k.refs {
		r.Flags.Clear(key)
	}
}

func (r *Reconciler) removeFinalizer(ctx context.Context, si *scimv1.ServiceIdentity) error {
	patch := status.FinalizersPatch(si.GetFinalizers())
	controllerutil.RemoveFinalizer(si, scimv1.DeprovisionFinalizer)
	if err := r.Patch(ctx, si, patch); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("removing finalizer: %w", err)
	}
	return nil
}

// plannedRevocations are the plans recorded instead of a revocation on the identity's targets in
// Observe mode, "target: action: reason".
func plannedRevocations(si *scimv1.ServiceIdentity) []string {
	var out []string
	for _, e := range si.Status.Targets {
		if e.Plan != nil {
			out = append(out, fmt.Sprintf("%s/%s: %s: %s", e.Kind, e.Name, e.Plan.Action, e.Plan.Reason))
		}
	}
	return out
}
