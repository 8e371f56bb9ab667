package controller

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/scim"
)

const (
	defaultOrphanInterval = time.Hour
	orphanNamesShown      = 10
	orphanPageSize        = 200
)

func orphanPolicy(t *Target) (scimv1.OrphanPolicy, time.Duration) {
	policy, interval := scimv1.OrphanPolicyReport, defaultOrphanInterval
	if o := t.Spec.Orphans; o != nil {
		if o.Policy != "" {
			policy = o.Policy
		}
		if o.Interval != nil {
			if d, err := o.Interval.Parse(); err == nil {
				interval = d
			}
		}
	}
	return policy, interval
}

// orphansIfDue scans the target for accounts carrying this cluster's externalId prefix that
// no ServiceIdentity owns, reports them and applies spec.orphans.policy. Accounts without the
// prefix are never touched. It returns when the next scan is due.
func (r *TargetReconciler) orphansIfDue(ctx context.Context, t *Target) (time.Duration, error) {
	policy, interval := orphanPolicy(t)
	if policy == scimv1.OrphanPolicyIgnore || r.ClusterID == "" {
		t.Status.Orphans = nil
		return 0, nil
	}
	// The last report, from memory or status, whichever is newer: the cache may not show our
	// own last write yet, and a status write that lost a conflict must not cost a rescan.
	last := t.Status.Orphans
	if v, ok := r.orphanReports.Load(t.Key()); ok {
		if mem := v.(*scimv1.OrphanReport); last == nil || last.LastScanTime == nil || mem.LastScanTime.After(last.LastScanTime.Time) {
			last = mem.DeepCopy()
		}
	}
	if last != nil && last.LastScanTime != nil {
		if due := interval - clockOr(r.Clock).Since(last.LastScanTime.Time); due > 0 {
			t.Status.Orphans = last
			return due, nil
		}
	}
	c, err := r.Clients.ForTarget(ctx, t)
	if err != nil {
		return 0, err
	}
	orphans, err := r.findOrphans(ctx, t, c)
	if err != nil {
		return 0, fmt.Errorf("scanning %s for orphaned accounts: %w", t.Key(), err)
	}
	acted := 0
	if policy == scimv1.OrphanPolicyDeactivate || policy == scimv1.OrphanPolicyDelete {
		acted, err = r.cleanOrphans(ctx, t, c, orphans, policy)
		if err != nil {
			return 0, err
		}
	}
	names := make([]string, 0, len(orphans))
	for _, u := range orphans {
		names = append(names, scim.Sanitize(u.UserName(), 256)) // the provider's text, shown on status
	}
	sort.Strings(names)
	previous := int32(-1)
	if last != nil {
		previous = last.Count
	}
	now := metav1.NewTime(clockOr(r.Clock).Now())
	t.Status.Orphans = &scimv1.OrphanReport{Count: int32(len(orphans)), UserNames: names[:min(len(names), orphanNamesShown)], LastScanTime: &now}
	r.orphanReports.Store(t.Key(), t.Status.Orphans.DeepCopy())
	orphanAccounts.WithLabelValues(t.Key()).Set(float64(len(orphans)))
	if len(orphans) > 0 && int32(len(orphans)) != previous {
		r.Recorder.Eventf(t.Object, nil, "Warning", "OrphansFound", "Scan",
			"%d account(s) carry this cluster's externalId prefix but have no ServiceIdentity (policy %s, %d acted on): %s",
			len(orphans), policy, acted, strings.Join(t.Status.Orphans.UserNames, ", "))
	}
	return jitter(interval), nil
}

// findOrphans lists the prefixed accounts (server-side filter, or a full scan when the
// provider cannot filter) and keeps those whose namespace/name has no ServiceIdentity.
func (r *TargetReconciler) findOrphans(ctx context.Context, t *Target, c *scim.Client) ([]scim.Resource, error) {
	prefix := r.ClusterID + "/"
	filter := prefix
	if t.Kind == scimv1.KindScimTarget {
		// A tenant's own target is judged for its own namespace only: its server could list
		// other namespaces' externalIds to learn which of their identities exist.
		filter += t.Namespace + "/"
	}
	// Page by page, keeping only what an orphan report and clean-up need of each orphan: a scan
	// of a large (or hostile) provider holds one page in memory, not the whole list.
	var orphans []scim.Resource
	keep := func(page []scim.Resource) error {
		for _, u := range page {
			rest, ok := strings.CutPrefix(u.ExternalID(), prefix)
			if !ok {
				continue
			}
			ns, name, ok := strings.Cut(rest, "/")
			if !ok || ns == "" || name == "" || (t.Kind == scimv1.KindScimTarget && ns != t.Namespace) {
				continue
			}
			err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &scimv1.ServiceIdentity{})
			switch {
			case apierrors.IsNotFound(err):
				orphan := scim.Resource{"id": u.ID(), "userName": u.UserName(), "externalId": u.ExternalID()}
				if active, present := u.Active(); present {
					orphan["active"] = active
				}
				orphans = append(orphans, orphan)
			case err != nil:
				return err
			}
		}
		return nil
	}
	err := c.EachPage(ctx, usersEndpoint, "externalId sw "+scim.Quote(filter), orphanPageSize, 0, keep)
	if err != nil && !scim.IsRetryable(err) && !scim.IsUnauthorized(err) && !errors.Is(err, scim.ErrLimitExceeded) {
		orphans = nil
		err = c.EachPage(ctx, usersEndpoint, "", orphanPageSize, 0, keep) // filter refused: scan everything
	}
	if err != nil {
		return nil, err
	}
	return orphans, nil
}

// cleanOrphans applies the orphan policy to each orphan through the Deprovisioner's account
// step (deactivated first, charged to the breaker). It stops where the breaker pauses it; the
// next scan continues.
func (r *TargetReconciler) cleanOrphans(ctx context.Context, t *Target, c *scim.Client, orphans []scim.Resource, policy scimv1.OrphanPolicy) (int, error) {
	acted := 0
	for _, u := range orphans {
		if active, present := u.Active(); policy == scimv1.OrphanPolicyDeactivate && present && !active {
			continue
		}
		done, err := r.Deprovisioner.Orphan(ctx, t, c, u, policy)
		if err != nil {
			return acted, fmt.Errorf("%s orphaned account %q: %w", strings.ToLower(string(policy)), scim.Sanitize(u.UserName(), 256), err)
		}
		if !done {
			return acted, nil
		}
		acted++
	}
	return acted, nil
}
