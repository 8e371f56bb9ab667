package identity

import (
	"context"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/account"
	"github.com/nhi-dev/scim-operator/internal/status"
)

// reconcileExpired deprovisions every account of an expired identity per its deletion policy.
// The object stays for audit; extending the expiry provisions again.
// kill is why the kill switch or governance holds the identity at the same time ("": neither):
// then no account is left active, whatever the deletion policy.
func (r *Reconciler) reconcileExpired(ctx context.Context, si *scimv1.ServiceIdentity, kill string) (ctrl.Result, error) {
	exp := si.Status.ExpiresAt.Time.UTC().Format(time.RFC3339)
	if outcomes, _ := r.Deprovisioner.Identity(ctx, si, account.Revocation{Cause: account.CauseExpired, Kill: kill}); len(outcomes) > 0 {
		return r.deprovisionBlocked(si, outcomes, fmt.Sprintf("Expired at %s; waiting to deprovision", exp))
	}
	gen := si.Generation
	conds := &si.Status.Conditions
	wasExpired := meta.IsStatusConditionTrue(*conds, scimv1.ConditionExpired)
	msg := fmt.Sprintf("Expired at %s; accounts deprovisioned per deletionPolicy. Extend spec.ttl or spec.expiresAt to provision again", exp)
	planned := plannedRevocations(si)
	if len(planned) > 0 {
		msg = fmt.Sprintf("Expired at %s; Observe mode: nothing was written (the plan: %s). Extend spec.ttl or spec.expiresAt to provision again",
			exp, strings.Join(planned, "; "))
	}
	msg = status.Truncate(msg, 1024)
	status.Set(conds, gen, scimv1.ConditionExpired, metav1.ConditionTrue, scimv1.ReasonExpired, msg)
	status.Stall(conds, &si.Status.ObservedGeneration, gen, scimv1.ReasonExpired, msg)
	if !wasExpired && len(planned) > 0 {
		r.Recorder.Eventf(si, nil, "Warning", scimv1.ReasonExpired, "Deprovision", msg)
	} else if !wasExpired {
		now := metav1.NewTime(r.now())
		si.Status.DeprovisionedAt = &now
		r.Recorder.Eventf(si, nil, "Warning", scimv1.ReasonExpired, "Deprovision", msg)
	}
	return ctrl.Result{}, nil
}
