package identity

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/account"
	"github.com/nhi-dev/scim-operator/internal/status"
)

// workloadRetry is how often a missing workload is looked for again.
const workloadRetry = 30 * time.Second

// ensureWorkloadOwner adds an ownerReference to spec.workloadRef's workload so garbage
// collection deletes the identity with it. It reads the workload only while the reference is
// missing. The outcome is not ok while the workload cannot be found.
func (r *Reconciler) ensureWorkloadOwner(ctx context.Context, si *scimv1.ServiceIdentity) account.Outcome {
	ref := si.Spec.WorkloadRef
	if ref == nil {
		return account.Outcome{}
	}
	for _, o := range si.OwnerReferences {
		if o.APIVersion == ref.APIVersion && o.Kind == ref.Kind && o.Name == ref.Name {
			return account.Outcome{}
		}
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return account.Outcome{Stalled: fmt.Sprintf("spec.workloadRef.apiVersion %q: %v", ref.APIVersion, err), Reason: scimv1.ReasonInvalidSpec}
	}
	w := &metav1.PartialObjectMetadata{}
	w.SetGroupVersionKind(gv.WithKind(ref.Kind))
	reader := r.APIReader
	if reader == nil {
		reader = r.Client
	}
	if err := reader.Get(ctx, client.ObjectKey{Namespace: si.Namespace, Name: ref.Name}, w); err != nil {
		switch {
		case apierrors.IsNotFound(err):
			return account.Outcome{Err: fmt.Errorf("workload %s %s/%s not found; the identity is provisioned once it exists",
				ref.Kind, si.Namespace, ref.Name), Reason: scimv1.ReasonWorkloadNotFound, RetryAfter: workloadRetry}
		case apierrors.IsForbidden(err), meta.IsNoMatchError(err):
			return account.Outcome{Stalled: fmt.Sprintf("cannot read workload %s %s: %v", ref.APIVersion, ref.Kind, err), Reason: scimv1.ReasonInvalidSpec}
		}
		return account.Outcome{Err: err, Reason: scimv1.ReasonProgressing}
	}
	patch := status.LockedPatch(si.DeepCopy())
	si.OwnerReferences = append(si.OwnerReferences, metav1.OwnerReference{
		APIVersion: ref.APIVersion, Kind: ref.Kind, Name: w.Name, UID: w.UID, BlockOwnerDeletion: ptr.To(false),
	})
	if err := r.Patch(ctx, si, patch); err != nil {
		return account.Outcome{Err: fmt.Errorf("adding the ownerReference to %s %s: %w", ref.Kind, ref.Name, err), Reason: scimv1.ReasonProgressing}
	}
	return account.Outcome{}
}
