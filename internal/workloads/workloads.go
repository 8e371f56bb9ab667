// Package workloads says which workload (ServiceAccount, Deployment, StatefulSet, CronJob) an
// identity belongs to, through its ownerReferences, spec.workloadRef or the owner its status
// recorded, and whether that workload is gone.
package workloads

import (
	"context"
	"fmt"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/outcome"
	"github.com/nhi-dev/scim-operator/internal/status"
)

// IdentityIndex indexes ServiceIdentities by their workloads ("Kind/name", Keys).
const IdentityIndex = "scim.nhi.dev/owner"

// IsKind reports whether apiVersion and kind name one of the workload kinds (any version).
func IsKind(apiVersion, kind string) bool {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return false
	}
	for _, gvk := range scimv1.WorkloadKinds {
		if gvk.Group == gv.Group && gvk.Kind == kind {
			return true
		}
	}
	return false
}

// Keys are the IdentityIndex values of si: its workload ownerReferences and spec.workloadRef.
func Keys(si *scimv1.ServiceIdentity) []string {
	var keys []string
	for _, o := range si.OwnerReferences {
		if IsKind(o.APIVersion, o.Kind) {
			keys = append(keys, o.Kind+"/"+o.Name)
		}
	}
	if ref := si.Spec.WorkloadRef; ref != nil {
		keys = append(keys, ref.Kind+"/"+ref.Name)
	}
	return keys
}

// OwnerOf is the workload that owns the identity: its ownerReference of a workload kind,
// else the one status recorded (the garbage collector removes the ownerReference when it
// orphans the identity), else, before any status was written, the one stamped at creation.
func OwnerOf(si *scimv1.ServiceIdentity) *scimv1.WorkloadOwner {
	if w := Referenced(si); w != nil {
		return w
	}
	if si.Status.Workload != nil {
		return si.Status.Workload
	}
	return Stamped(si)
}

// Stamped is the owner the identity's WorkloadAtCreationAnnotation names, while nothing is
// recorded on its status yet (no condition: no status write of the identity controller has
// landed); nil otherwise, or when the annotation does not name a workload kind.
func Stamped(si *scimv1.ServiceIdentity) *scimv1.WorkloadOwner {
	v := si.Annotations[scimv1.WorkloadAtCreationAnnotation]
	if v == "" || len(si.Status.Conditions) > 0 || si.Status.Workload != nil {
		return nil
	}
	parts := strings.Split(v, "/")
	if len(parts) != 3 || parts[1] == "" || parts[2] == "" {
		return nil
	}
	for _, gvk := range scimv1.WorkloadKinds {
		if gvk.Kind == parts[0] {
			return &scimv1.WorkloadOwner{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind, Name: parts[1], UID: types.UID(parts[2])}
		}
	}
	return nil
}

// Stamp is the WorkloadAtCreationAnnotation value naming w.
func Stamp(w *scimv1.WorkloadOwner) string {
	return w.Kind + "/" + w.Name + "/" + string(w.UID)
}

// Referenced is the workload an ownerReference of si names, if any.
func Referenced(si *scimv1.ServiceIdentity) *scimv1.WorkloadOwner {
	for _, o := range si.OwnerReferences {
		if IsKind(o.APIVersion, o.Kind) {
			return &scimv1.WorkloadOwner{APIVersion: o.APIVersion, Kind: o.Kind, Name: o.Name, UID: o.UID}
		}
	}
	return nil
}

// Gone looks the workload up (the metadata cache, api on a miss) and reports
// why it counts as gone: absent, being deleted, or replaced by a namesake with another UID.
func Gone(ctx context.Context, cache, api client.Reader, namespace string, w *scimv1.WorkloadOwner) (string, error) {
	gv, err := schema.ParseGroupVersion(w.APIVersion)
	if err != nil {
		return "", nil
	}
	m := &metav1.PartialObjectMetadata{}
	for _, gvk := range scimv1.WorkloadKinds { // the kinds the cache watches, whatever version the reference names
		if gvk.Group == gv.Group && gvk.Kind == w.Kind {
			m.SetGroupVersionKind(gvk)
		}
	}
	if m.Kind == "" {
		return "", nil
	}
	key := types.NamespacedName{Namespace: namespace, Name: w.Name}
	err = cache.Get(ctx, key, m)
	if apierrors.IsNotFound(err) && api != nil {
		err = api.Get(ctx, key, m) // the cache may not have a just-created workload yet
	}
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Sprintf("%s %s/%s was deleted", w.Kind, namespace, w.Name), nil
	case err != nil:
		return "", fmt.Errorf("looking up the owner %s %s/%s: %w", w.Kind, namespace, w.Name, err)
	case m.UID != w.UID:
		return fmt.Sprintf("%s %s/%s was deleted (an object of that name now is another one)", w.Kind, namespace, w.Name), nil
	case !m.DeletionTimestamp.IsZero():
		return fmt.Sprintf("%s %s/%s is being deleted", w.Kind, namespace, w.Name), nil
	}
	return "", nil
}

// workloadRetry is how often a missing workload is looked for again.
const workloadRetry = 30 * time.Second

// EnsureOwner adds an ownerReference to spec.workloadRef's workload so garbage
// collection deletes the identity with it. It reads the workload only while the reference is
// missing. The outcome is not ok while the workload cannot be found.
func EnsureOwner(ctx context.Context, c client.Client, api client.Reader, si *scimv1.ServiceIdentity) outcome.Outcome {
	ref := si.Spec.WorkloadRef
	if ref == nil {
		return outcome.Outcome{}
	}
	for _, o := range si.OwnerReferences {
		if o.APIVersion == ref.APIVersion && o.Kind == ref.Kind && o.Name == ref.Name {
			return outcome.Outcome{}
		}
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return outcome.Outcome{Stalled: fmt.Sprintf("spec.workloadRef.apiVersion %q: %v", ref.APIVersion, err), Reason: scimv1.ReasonInvalidSpec}
	}
	w := &metav1.PartialObjectMetadata{}
	w.SetGroupVersionKind(gv.WithKind(ref.Kind))
	reader := api
	if reader == nil {
		reader = c
	}
	if err := reader.Get(ctx, client.ObjectKey{Namespace: si.Namespace, Name: ref.Name}, w); err != nil {
		switch {
		case apierrors.IsNotFound(err):
			return outcome.Outcome{Err: fmt.Errorf("workload %s %s/%s not found; the identity is provisioned once it exists",
				ref.Kind, si.Namespace, ref.Name), Reason: scimv1.ReasonWorkloadNotFound, RetryAfter: workloadRetry}
		case apierrors.IsForbidden(err), meta.IsNoMatchError(err):
			return outcome.Outcome{Stalled: fmt.Sprintf("cannot read workload %s %s: %v", ref.APIVersion, ref.Kind, err), Reason: scimv1.ReasonInvalidSpec}
		}
		return outcome.Outcome{Err: err, Reason: scimv1.ReasonProgressing}
	}
	patch := status.LockedPatch(si.DeepCopy())
	si.OwnerReferences = append(si.OwnerReferences, metav1.OwnerReference{
		APIVersion: ref.APIVersion, Kind: ref.Kind, Name: w.Name, UID: w.UID, BlockOwnerDeletion: ptr.To(false),
	})
	if err := c.Patch(ctx, si, patch); err != nil {
		return outcome.Outcome{Err: fmt.Errorf("adding the ownerReference to %s %s: %w", ref.Kind, ref.Name, err), Reason: scimv1.ReasonProgressing}
	}
	return outcome.Outcome{}
}
