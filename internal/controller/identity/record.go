package identity

import (
	"context"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/account"
	"github.com/nhi-dev/scim-operator/internal/stampguard"
	"github.com/nhi-dev/scim-operator/internal/status"
	"github.com/nhi-dev/scim-operator/internal/targets"
	"github.com/nhi-dev/scim-operator/internal/workloads"
)

// What a crash, a kill or a tenant must not make the operator lose: the finalizer and the
// creation stamps (finalizers), the record written before a call that could create or
// reactivate an account (record, keepStamped), what a pass that could not write its status
// remembers (unrecorded) and still withdraws (unrecordable), the targets that may hold an
// account no status names (strays), and whether the stamps may stand for a record on a
// ClusterScimTarget (stampsGuarded, guardChanged).

// keepStamped puts on the first status the identity gets every target stamped at its creation
// that the status does not name (as Pending: an account may be there), and the stamped owner
// when it names none: that write ends what the stamp says, whatever the pass did (a spec that
// cannot be provisioned writes conditions and no entry), so nothing the stamp recorded is lost
// with it. On every later write (base has a status) it does nothing.
func keepStamped(si, base *scimv1.ServiceIdentity) {
	if si.Status.Workload == nil {
		// And the owner: a first status from a pass that did not record it (suspended, expired,
		// governed) would otherwise end the stamp that says which workload retires the identity.
		si.Status.Workload = workloads.Stamped(base)
	}
	stamped := targets.Stamped(base)
	if len(stamped) == 0 {
		return
	}
	entries := targets.IndexEntries(si.Namespace, si.Status.Targets)
	for _, ref := range stamped {
		if key := targets.RefKey(ref, si.Namespace); entries[key] == nil {
			e := scimv1.IdentityTargetStatus{Kind: ref.TargetKind(), Name: ref.Name, State: scimv1.TargetStatePending,
				Message: "Named when the identity was created"}
			si.Status.Targets = append(si.Status.Targets, e)
			entries[key] = &e
		}
	}
}

// unrecorded flags the accounts a pass provisioned on targets its status did not record, when
// that status could not be written: the next pass reads each again, and every revocation path
// (strays, account.Deprovisioner.Identity) deprovisions it should the spec no longer name the
// target by then.
func (r *Reconciler) unrecorded(si, base *scimv1.ServiceIdentity) {
	recorded := targets.IndexEntries(si.Namespace, base.Status.Targets)
	for _, e := range si.Status.Targets {
		// Also without an id: a POST whose answer was lost may have created the account.
		if key := targets.Key(e.Kind, si.Namespace, e.Name); recorded[key] == nil {
			r.Flags.Mark(si, key)
		}
	}
}

// finalizers puts DeprovisionFinalizer on a live identity and, when security events are
// configured, SecurityEventsFinalizer (the outbox of its tokens outlives its deletion until
// they are delivered); without security events, nothing would ever release the latter, so it
// goes.
func (r *Reconciler) finalizers(ctx context.Context, si *scimv1.ServiceIdentity) error {
	patch := status.FinalizersPatch(si.GetFinalizers())
	changed := false
	if si.DeletionTimestamp.IsZero() && len(si.Status.Conditions) == 0 && len(si.Status.Targets) == 0 &&
		!controllerutil.ContainsFinalizer(si, scimv1.DeprovisionFinalizer) {
		// Without the admission policy, the targets and the owner are stamped here, in the same
		// write, as the policy does at creation (record relies on them to write nothing before
		// the first call). Stamps already there (the finalizer was removed before any status was
		// written) stay as they are: a pass may have created accounts on what they name, and
		// record writes a Pending entry first for a target they do not name.
		var stamps []string
		read := si.GetAnnotations()
		if targets.Stamped(si) == nil {
			stamps = append(stamps, scimv1.TargetsAtCreationAnnotation)
			metav1.SetMetaDataAnnotation(&si.ObjectMeta, scimv1.TargetsAtCreationAnnotation, targets.Stamp(si.Spec.TargetRefs))
		}
		_, stale := si.Annotations[scimv1.WorkloadAtCreationAnnotation]
		switch w := workloads.Referenced(si); {
		case workloads.Stamped(si) != nil:
		case w != nil:
			stamps = append(stamps, scimv1.WorkloadAtCreationAnnotation)
			metav1.SetMetaDataAnnotation(&si.ObjectMeta, scimv1.WorkloadAtCreationAnnotation, workloads.Stamp(w))
		case stale:
			// One the request carried (a copy of another identity): emptied, so it names nobody.
			stamps = append(stamps, scimv1.WorkloadAtCreationAnnotation)
			si.Annotations[scimv1.WorkloadAtCreationAnnotation] = ""
		}
		patch = status.FinalizersAndAnnotationsPatch(si.GetFinalizers(), read, stamps...)
	}
	if si.DeletionTimestamp.IsZero() {
		changed = controllerutil.AddFinalizer(si, scimv1.DeprovisionFinalizer)
		if r.SecurityEvents {
			changed = controllerutil.AddFinalizer(si, scimv1.SecurityEventsFinalizer) || changed
		}
	}
	if !r.SecurityEvents {
		changed = controllerutil.RemoveFinalizer(si, scimv1.SecurityEventsFinalizer) || changed
	}
	if !changed {
		return nil
	}
	if err := r.Patch(ctx, si, patch); err != nil && (si.DeletionTimestamp.IsZero() || !apierrors.IsNotFound(err)) {
		return fmt.Errorf("updating finalizers: %w", err)
	}
	return nil
}

// record puts on status, before any call that could create or reactivate an account, what a
// crash must not lose and nothing else would find:
//   - an entry that says Deprovisioned (expiry extended, access given back) becomes Pending: a
//     kill after the call would otherwise leave an active account behind an entry every later
//     revocation trusts;
//   - a ClusterScimTarget named for the first time gets a Pending entry: its provider is
//     shared, and an account there exists only once the identity's status can say so (a
//     tenant whose status cannot be written gets none, and the kill switch never reports an
//     account it could not record);
//   - the owning workload, unless it was stamped at creation (WorkloadAtCreationAnnotation):
//     an owner deleted with orphan propagation while the operator was down must still retire
//     the identity.
//
// A namespace's own ScimTarget named for the first time is not recorded: its provider is the
// tenant's, and a kill after its POST leaves an account that every later pass finds by its
// externalId while the spec names the target (expiry, the kill switch, governance, a
// retirement and the deletion all look the spec's targets up), and through the targets stamped
// at creation (TargetsAtCreationAnnotation) when the targetRef was removed meanwhile: they are
// looked up and deprovisioned as dropped targets. A new identity on its namespace's targets so
// costs its Ready status alone. The write, when there is one, is optimistically locked: a conflict means this pass saw
// an old status, and it is retried on a fresh one.
func (r *Reconciler) record(ctx context.Context, si, base *scimv1.ServiceIdentity) error {
	changed := false
	if w := si.Status.Workload; w != nil && !equality.Semantic.DeepEqual(base.Status.Workload, w) {
		stamped := workloads.Stamped(base)
		changed = stamped == nil || stamped.UID != w.UID
	}
	entries := targets.IndexEntries(si.Namespace, si.Status.Targets)
	stampedRefs := targets.Stamped(base)
	var stamped []string
	for _, ref := range stampedRefs {
		stamped = append(stamped, targets.RefKey(ref, si.Namespace))
	}
	for _, ref := range si.Spec.TargetRefs {
		key := targets.RefKey(ref, si.Namespace)
		switch e := entries[key]; {
		case e == nil && (!slices.Contains(stamped, key) || ref.ClusterScoped() && !r.stampsGuarded()):
			e := scimv1.IdentityTargetStatus{Kind: ref.TargetKind(), Name: ref.Name, State: scimv1.TargetStatePending,
				Message: "Recorded before the first call to the target"}
			si.Status.Targets = append(si.Status.Targets, e)
			entries[key] = &e
			changed = true
		case e != nil && e.State == scimv1.TargetStateDeprovisioned:
			for i := range si.Status.Targets {
				if t := &si.Status.Targets[i]; targets.Key(t.Kind, si.Namespace, t.Name) == key {
					t.State, t.Message = scimv1.TargetStatePending, "Recorded before provisioning again"
				}
			}
			changed = true
		}
	}
	if !changed {
		return nil
	}
	// The first status write ends what the stamp says: a target named at creation and no longer
	// in the spec, which may hold an account, is recorded here instead.
	keepStamped(si, base)
	if err := status.Patch(ctx, r, si, base, true); err != nil {
		return fmt.Errorf("recording the targets before provisioning: %w", err)
	}
	base.Status = *si.Status.DeepCopy()
	base.ResourceVersion = si.ResourceVersion
	return nil
}

// stampsGuarded says whether the stamps of a new identity may stand for the record of its
// ClusterScimTargets: StampsGuarded is set and the admission policies it promises were last
// found in force (guardChanged).
func (r *Reconciler) stampsGuarded() bool { return r.StampsGuarded && r.memory.guarded.Load() }

// unguarded is what is logged when the flag promises policies that are not in force.
const unguarded = "--creation-stamps-guarded is set but the creation stamps are not guarded: " +
	"a Pending record is written before a new identity's first call to a ClusterScimTarget"

// reportUnguarded says once, at start, when the flag promises policies that are not there at
// all (guardChanged only hears of those that exist): the error is logged and the metric shows 0.
func (r *Reconciler) reportUnguarded(ctx context.Context, c cache.Cache) {
	if !c.WaitForCacheSync(ctx) {
		return
	}
	if err := stampguard.InForce(ctx, r.Client); err != nil && !r.memory.guarded.Load() {
		r.Metrics.StampsGuarded(false)
		ctrl.Log.WithName("stampguard").Error(err, unguarded)
	}
}

// guardChanged looks again whether the policies the creation stamps rely on are in force
// (stampguard.InForce), after an event of a ValidatingAdmissionPolicy or a binding, and logs a
// change. When they are no longer, every identity without a status yet is looked at again: a
// target stamped without a Pending record gets one (the stamp could be changed from now on).
func (r *Reconciler) guardChanged(ctx context.Context, _ client.Object) []reconcile.Request {
	err := stampguard.InForce(ctx, r.Client)
	// Shown once this is done: the identities looked at again are those that exist now.
	defer r.Metrics.StampsGuarded(err == nil)
	if was := r.memory.guarded.Swap(err == nil); was == (err == nil) {
		return nil
	}
	log := logf.FromContext(ctx)
	if err == nil {
		log.Info("The creation stamps are guarded: a new identity's account on a ClusterScimTarget is created before its status is written")
		return nil
	}
	log.Error(err, unguarded)
	list := &scimv1.ServiceIdentityList{}
	if err := r.List(ctx, list); err != nil {
		log.Error(err, "Listing the identities whose creation stamps may be their only record")
		return nil
	}
	var reqs []reconcile.Request
	for i := range list.Items {
		if targets.Stamped(&list.Items[i]) != nil {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		}
	}
	return reqs
}

// strays adds to the pass the targets that may hold an account of the identity that neither
// its spec nor its status names (targets.SweepFlags.MayHold): drop deprovisions them as
// dropped targets.
func (r *Reconciler) strays(si *scimv1.ServiceIdentity, p *syncPass) {
	for _, ref := range r.Flags.MayHold(si) {
		key := targets.RefKey(ref, si.Namespace)
		if p.entries[key] != nil || slices.ContainsFunc(si.Spec.TargetRefs, func(spec scimv1.TargetReference) bool {
			return targets.RefKey(spec, si.Namespace) == key
		}) {
			continue
		}
		p.entries[key] = &scimv1.IdentityTargetStatus{Kind: ref.TargetKind(), Name: ref.Name, State: scimv1.TargetStatePending}
	}
}

// unrecordable ends the pass of an identity whose record could not be written (err): nothing is
// created or reactivated, but no withdrawal waits for the write either, since a tenant may make
// its identity's status unwritable on purpose. With the kill switch (or governance) holding the
// identity, every account is deactivated; otherwise the accounts on the targets the spec no
// longer names (on status, stamped at creation, or flagged by a sweep), and on those that no
// longer allow its namespace, are taken away.
func (r *Reconciler) unrecordable(ctx context.Context, si *scimv1.ServiceIdentity, p *syncPass, err error) (ctrl.Result, error) {
	if kill := account.Killed(si); kill != "" {
		_, _ = r.Deprovisioner.Identity(ctx, si, account.Revocation{Cause: account.CauseSuspended, Kill: kill})
		return ctrl.Result{}, err
	}
	// The pass of a spec that cannot be provisioned: targets that refuse the namespace are
	// withdrawn from, nothing is created.
	p.desired = nil
	p.entries = targets.IndexEntries(si.Namespace, si.Status.Targets)
	r.strays(si, p)
	r.sync(ctx, si, p)
	r.drop(ctx, si, p)
	return ctrl.Result{}, err
}
