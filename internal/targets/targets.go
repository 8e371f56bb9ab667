// Package targets sees ScimTargets and ClusterScimTargets through one view (Target): their keys,
// how an identity's reference resolves, which namespaces a target serves, and the index that
// lists a target's identities.
package targets

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

// IdentityIndex indexes ServiceIdentities by the targets they reference or hold an account on
// (Key); the identity controller registers it.
const IdentityIndex = "scim.nhi.dev/target"

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

// ClusterScoped is true for a ClusterScimTarget: it serves the namespaces it allows, reads its
// Secrets from the cluster-resource namespace, and is the cluster admin's.
func (t *Target) ClusterScoped() bool { return t.Kind == scimv1.KindClusterScimTarget }

// Key names the target for messages and as a map key: "ScimTarget/ns/name" or "ClusterScimTarget/name".
func (t *Target) Key() string { return Key(t.Kind, t.Namespace, t.Name) }

// Key names a target of kind in namespace ("" for a ClusterScimTarget).
func Key(kind, namespace, name string) string {
	if kind == scimv1.KindClusterScimTarget {
		return kind + "/" + name
	}
	return kind + "/" + namespace + "/" + name
}

// Stamped are the targets the identity's TargetsAtCreationAnnotation names, while nothing is
// recorded on its status yet (no condition, no entry); nil otherwise.
func Stamped(si *scimv1.ServiceIdentity) []scimv1.TargetReference {
	v := si.Annotations[scimv1.TargetsAtCreationAnnotation]
	if v == "" || len(si.Status.Conditions) > 0 || len(si.Status.Targets) > 0 {
		return nil
	}
	parts := strings.Split(v, ",")
	if len(parts) > MaxStampedTargets {
		return nil // not a stamp the admission policy or the operator wrote: a spec holds fewer
	}
	var refs []scimv1.TargetReference
	for _, part := range parts {
		kind, name, ok := strings.Cut(strings.TrimSpace(part), "/")
		ref := scimv1.TargetReference{Kind: kind, Name: name}
		if !ok || len(validation.IsDNS1123Subdomain(name)) > 0 || (kind != scimv1.KindScimTarget && kind != scimv1.KindClusterScimTarget) {
			// Not a stamp of names only targets can have (a targetRef name with a comma would
			// split into parts naming other targets): none of it is trusted.
			return nil
		}
		if !slices.Contains(refs, ref) {
			refs = append(refs, ref)
		}
	}
	return refs
}

// MaxStampedTargets bounds the targets a TargetsAtCreationAnnotation may name (spec.targetRefs
// holds at most as many): a longer one is ignored, so that no identity can make each of its
// passes look up thousands of targets.
const MaxStampedTargets = 32

// Stamp is the TargetsAtCreationAnnotation value naming refs.
func Stamp(refs []scimv1.TargetReference) string {
	parts := make([]string, 0, len(refs))
	for _, ref := range refs {
		parts = append(parts, ref.TargetKind()+"/"+ref.Name)
	}
	return strings.Join(parts, ",")
}

// RefOf is the reference, from an identity in identityNamespace, to the target of key; false
// when key names no target that identity could reference (a ScimTarget of another namespace).
func RefOf(key, identityNamespace string) (scimv1.TargetReference, bool) {
	parts := strings.Split(key, "/")
	switch {
	case len(parts) == 2 && parts[0] == scimv1.KindClusterScimTarget && parts[1] != "":
		return scimv1.TargetReference{Kind: scimv1.KindClusterScimTarget, Name: parts[1]}, true
	case len(parts) == 3 && parts[0] == scimv1.KindScimTarget && parts[1] == identityNamespace && parts[2] != "":
		return scimv1.TargetReference{Kind: scimv1.KindScimTarget, Name: parts[2]}, true
	}
	return scimv1.TargetReference{}, false
}

// RefKey is the Key of the target ref names, from an identity in identityNamespace.
func RefKey(ref scimv1.TargetReference, identityNamespace string) string {
	return Key(ref.TargetKind(), identityNamespace, ref.Name)
}

// NotFoundError says a referenced target does not exist.
type NotFoundError struct{ Target string }

func (e *NotFoundError) Error() string { return e.Target + " not found" }

// Get resolves a reference made from identityNamespace.
func Get(ctx context.Context, c client.Reader, ref scimv1.TargetReference, identityNamespace, clusterResourceNamespace string) (*Target, error) {
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
			return nil, &NotFoundError{Target: RefKey(ref, identityNamespace)}
		}
		return nil, err
	}
	return Of(obj, clusterResourceNamespace), nil
}

// Of sees a ScimTarget or ClusterScimTarget through the Target view the controllers
// share: a ClusterScimTarget reads its Secrets from the cluster-resource namespace.
func Of(obj scimv1.GenericTarget, clusterResourceNamespace string) *Target {
	t := &Target{Kind: obj.TargetKind(), Name: obj.GetName(), Namespace: obj.GetNamespace(), SecretNamespace: obj.GetNamespace(),
		Spec: obj.TargetSpec(), Status: obj.TargetStatus(), AllowedNamespaces: obj.Namespaces(), Object: obj.(client.Object)}
	if obj.ClusterScoped() {
		t.Namespace, t.SecretNamespace = "", clusterResourceNamespace
	}
	return t
}

// OfObject sees an object of a target kind through the Target view; the caller knows it is one.
func OfObject(obj client.Object, clusterResourceNamespace string) *Target {
	gt, ok := obj.(scimv1.GenericTarget)
	if !ok {
		panic(fmt.Sprintf("OfObject: %T is not a target", obj))
	}
	return Of(gt, clusterResourceNamespace)
}

// NamespaceAllowed checks a ClusterScimTarget's allowedNamespaces; "" means allowed, else the
// rule that refused. A ScimTarget serves its own namespace only (references never cross
// namespaces). Unset or empty allowedNamespaces allows no namespace.
func NamespaceAllowed(ctx context.Context, c client.Reader, t *Target, namespace string) (string, error) {
	if !t.ClusterScoped() {
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

// Identities lists, read-only (no deep copies), the identities that reference a target
// or still have an account on it.
func Identities(ctx context.Context, c client.Reader, kind, namespace, name string) (*scimv1.ServiceIdentityList, error) {
	list := &scimv1.ServiceIdentityList{}
	opts := []client.ListOption{client.MatchingFields{IdentityIndex: Key(kind, namespace, name)}, client.UnsafeDisableDeepCopy}
	if kind == scimv1.KindScimTarget {
		opts = append(opts, client.InNamespace(namespace))
	}
	if err := c.List(ctx, list, opts...); err != nil {
		return nil, fmt.Errorf("listing identities of %s: %w", Key(kind, namespace, name), err)
	}
	return list, nil
}

// IndexEntries keys status entries like targets.RefKey does for references made from namespace.
func IndexEntries(namespace string, entries []scimv1.IdentityTargetStatus) map[string]*scimv1.IdentityTargetStatus {
	out := make(map[string]*scimv1.IdentityTargetStatus, len(entries))
	for i := range entries {
		e := entries[i]
		out[Key(e.Kind, namespace, e.Name)] = &e
	}
	return out
}

func MatchAttribute(t *Target) scimv1.MatchAttribute {
	if c := t.Spec.Compatibility; c != nil && c.MatchAttribute != "" {
		return c.MatchAttribute
	}
	return scimv1.MatchExternalID
}
