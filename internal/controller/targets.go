package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

// Target is a ScimTarget or ClusterScimTarget seen through their shared spec.
type Target struct {
	Kind string
	Name string
	// Namespace is the ScimTarget's namespace; empty for a ClusterScimTarget.
	Namespace string
	// SecretNamespace is where the target's secrets are read from.
	SecretNamespace string
	Spec            *scimv1.ScimTargetSpec
	Status          *scimv1.ScimTargetStatus
	// AllowedNamespaces restricts a ClusterScimTarget's users; nil allows all.
	AllowedNamespaces *scimv1.AllowedNamespaces
	Object            client.Object
}

// Key names the target for messages and as a map key: "ScimTarget/ns/name" or "ClusterScimTarget/name".
func (t *Target) Key() string { return targetKey(t.Kind, t.Namespace, t.Name) }

func targetKey(kind, namespace, name string) string {
	if kind == scimv1.KindClusterScimTarget {
		return kind + "/" + name
	}
	return kind + "/" + namespace + "/" + name
}

func refKey(ref scimv1.TargetReference, identityNamespace string) string {
	return targetKey(ref.TargetKind(), identityNamespace, ref.Name)
}

// errTargetNotFound says a referenced target does not exist.
type errTargetNotFound struct{ key string }

func (e *errTargetNotFound) Error() string { return e.key + " not found" }

// getTarget resolves a reference made from identityNamespace.
func getTarget(ctx context.Context, c client.Reader, ref scimv1.TargetReference, identityNamespace, clusterResourceNamespace string) (*Target, error) {
	obj, err := scimv1.NewGenericTarget(ref.TargetKind())
	if err != nil {
		return nil, err
	}
	key := types.NamespacedName{Namespace: identityNamespace, Name: ref.Name}
	if obj.ClusterScoped() {
		key.Namespace = ""
	}
	if err := c.Get(ctx, key, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &errTargetNotFound{key: refKey(ref, identityNamespace)}
		}
		return nil, err
	}
	return targetView(obj, clusterResourceNamespace), nil
}

// targetView sees a ScimTarget or ClusterScimTarget through the Target view the controllers
// share: a ClusterScimTarget reads its Secrets from the cluster-resource namespace.
func targetView(obj scimv1.GenericTarget, clusterResourceNamespace string) *Target {
	t := &Target{Kind: obj.TargetKind(), Name: obj.GetName(), Namespace: obj.GetNamespace(), SecretNamespace: obj.GetNamespace(),
		Spec: obj.TargetSpec(), Status: obj.TargetStatus(), AllowedNamespaces: obj.Namespaces(), Object: obj.(client.Object)}
	if obj.ClusterScoped() {
		t.Namespace, t.SecretNamespace = "", clusterResourceNamespace
	}
	return t
}

// viewOf sees an object of a target kind through the Target view; the caller knows it is one.
func viewOf(obj client.Object, clusterResourceNamespace string) *Target {
	gt, ok := obj.(scimv1.GenericTarget)
	if !ok {
		panic(fmt.Sprintf("viewOf: %T is not a target", obj))
	}
	return targetView(gt, clusterResourceNamespace)
}

// namespaceAllowed checks a ClusterScimTarget's allowedNamespaces; "" means allowed, else the
// rule that refused. A ScimTarget serves its own namespace only (references never cross
// namespaces). Unset or empty allowedNamespaces allows no namespace.
func namespaceAllowed(ctx context.Context, c client.Reader, t *Target, namespace string) (string, error) {
	if t.Kind != scimv1.KindClusterScimTarget {
		return "", nil
	}
	a := t.AllowedNamespaces
	if a == nil || (len(a.Names) == 0 && a.Selector == nil) {
		return fmt.Sprintf("%s allows no namespace: spec.allowedNamespaces is unset (list names, or use a selector; `selector: {}` allows all)", t.Key()), nil
	}
	for _, n := range a.Names {
		if n == namespace {
			return "", nil
		}
	}
	if a.Selector != nil {
		sel, err := metav1.LabelSelectorAsSelector(a.Selector)
		if err != nil {
			return fmt.Sprintf("%s has an invalid allowedNamespaces.selector: %v", t.Key(), err), nil
		}
		ns := &corev1.Namespace{}
		if err := c.Get(ctx, types.NamespacedName{Name: namespace}, ns); err != nil {
			return "", err
		}
		if sel.Matches(labels.Set(ns.Labels)) {
			return "", nil
		}
	}
	return fmt.Sprintf("namespace %q is not allowed by %s spec.allowedNamespaces (names %v, selector %s)",
		namespace, t.Key(), a.Names, metav1.FormatLabelSelector(a.Selector)), nil
}

// identitiesOfTarget lists, read-only (no deep copies), the identities that reference a target
// or still have an account on it.
func identitiesOfTarget(ctx context.Context, c client.Reader, kind, namespace, name string) (*scimv1.ServiceIdentityList, error) {
	list := &scimv1.ServiceIdentityList{}
	opts := []client.ListOption{client.MatchingFields{identityTargetIndex: targetKey(kind, namespace, name)}, client.UnsafeDisableDeepCopy}
	if kind == scimv1.KindScimTarget {
		opts = append(opts, client.InNamespace(namespace))
	}
	if err := c.List(ctx, list, opts...); err != nil {
		return nil, fmt.Errorf("listing identities of %s: %w", targetKey(kind, namespace, name), err)
	}
	return list, nil
}
