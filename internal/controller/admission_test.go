package controller

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

var _ = Describe("The admission policy of config/admission", func() {
	ctx := context.Background()

	It("sets the deprovision finalizer at creation, keeping others and never twice", func() {
		data, err := os.ReadFile(filepath.Join("..", "..", "config", "admission", "finalizer-policy.yaml"))
		Expect(err).NotTo(HaveOccurred())
		policy := &admissionv1.MutatingAdmissionPolicy{}
		Expect(yaml.UnmarshalStrict([]byte(strings.Split(string(data), "\n---\n")[0]), policy)).To(Succeed())
		Expect(policy.Kind).To(Equal("MutatingAdmissionPolicy"))
		policy.Name = "test-" + policy.Name
		Expect(k8s.Create(ctx, policy)).To(Succeed())
		DeferCleanup(func() { Expect(k8s.Delete(ctx, policy)).To(Succeed()) })
		// The shipped binding applies everywhere; this one only to a namespace of this spec, so
		// the other specs keep exercising the operator adding the finalizer itself.
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "admission-", Labels: map[string]string{"scim-test/admission": "on"}}}
		Expect(k8s.Create(ctx, ns)).To(Succeed())
		binding := &admissionv1.MutatingAdmissionPolicyBinding{ObjectMeta: metav1.ObjectMeta{Name: policy.Name},
			Spec: admissionv1.MutatingAdmissionPolicyBindingSpec{PolicyName: policy.Name,
				MatchResources: &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{MatchLabels: ns.Labels}}}}
		Expect(k8s.Create(ctx, binding)).To(Succeed())
		DeferCleanup(func() { Expect(k8s.Delete(ctx, binding)).To(Succeed()) })

		create := func(finalizers ...string) ([]string, error) {
			// No target of that name: the operator leaves the accounts alone.
			si := newIdentity(ns.Name, "", "absent")
			si.GenerateName = "si-"
			si.Finalizers = finalizers
			err := k8s.Create(ctx, si)
			return si.Finalizers, err // as the API server stored them
		}
		created := func(finalizers ...string) []string {
			f, err := create(finalizers...)
			Expect(err).NotTo(HaveOccurred())
			return f
		}
		// Once the policy is active, and the API server has published the CRD's schema to it
		// (until then creates get 503, which is why the policy is not in this suite's setup).
		Eventually(create).Should(Equal([]string{scimv1.DeprovisionFinalizer}))
		Expect(created("example.com/keep")).To(Equal([]string{"example.com/keep", scimv1.DeprovisionFinalizer}))
		Expect(created(scimv1.DeprovisionFinalizer)).To(Equal([]string{scimv1.DeprovisionFinalizer}))

		// The owning workload is stamped, replacing what the request said; other owners are not.
		owned := func(annotations map[string]string, owners ...metav1.OwnerReference) map[string]string {
			si := newIdentity(ns.Name, "", "absent")
			si.GenerateName, si.Annotations, si.OwnerReferences = "owned-", annotations, owners
			Expect(k8s.Create(ctx, si)).To(Succeed())
			return si.Annotations
		}
		robot := metav1.OwnerReference{APIVersion: "v1", Kind: "ServiceAccount", Name: "robot", UID: "uid-1"}
		web := metav1.OwnerReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: "uid-2"}
		other := metav1.OwnerReference{APIVersion: "example.com/v1", Kind: "Widget", Name: "w", UID: "uid-3"}
		const targetsStamp = "ScimTarget/absent"
		Expect(owned(nil, robot)).To(Equal(map[string]string{scimv1.WorkloadAtCreationAnnotation: "ServiceAccount/robot/uid-1",
			scimv1.TargetsAtCreationAnnotation: targetsStamp}))
		Expect(owned(map[string]string{"keep": "me", scimv1.WorkloadAtCreationAnnotation: "ServiceAccount/forged/uid-9",
			scimv1.TargetsAtCreationAnnotation: "ScimTarget/forged"}, other, web)).
			To(Equal(map[string]string{"keep": "me", scimv1.WorkloadAtCreationAnnotation: "Deployment/web/uid-2",
				scimv1.TargetsAtCreationAnnotation: targetsStamp}))
		Expect(owned(nil, other)).To(Equal(map[string]string{scimv1.TargetsAtCreationAnnotation: targetsStamp}))
		Expect(owned(map[string]string{scimv1.WorkloadAtCreationAnnotation: "ServiceAccount/copied/uid-8"})).
			To(Equal(map[string]string{scimv1.TargetsAtCreationAnnotation: targetsStamp}), "a copied owner stamp without an owner")
		// Both kinds of target, in the spec's order; the stamp reads back as the spec.
		si := newIdentity(ns.Name, "", "absent")
		si.GenerateName = "two-"
		si.Spec.TargetRefs = append(si.Spec.TargetRefs, scimv1.TargetReference{Kind: scimv1.KindClusterScimTarget, Name: "corp"})
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Expect(si.Annotations).To(HaveKeyWithValue(scimv1.TargetsAtCreationAnnotation, "ScimTarget/absent,ClusterScimTarget/corp"))
		Expect(targets.Stamped(si)).To(Equal([]scimv1.TargetReference{{Kind: scimv1.KindScimTarget, Name: "absent"},
			{Kind: scimv1.KindClusterScimTarget, Name: "corp"}}))

		// GitOps with server-side apply: the finalizer set at creation is nobody's field, so
		// applying the same manifest again (or a changed one) leaves it in place.
		manifest := func(displayName string) *unstructured.Unstructured {
			u := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": scimv1.GroupVersion.String(), "kind": "ServiceIdentity",
				"metadata": map[string]any{"namespace": ns.Name, "name": "from-git"},
				"spec":     map[string]any{"displayName": displayName, "targetRefs": []any{map[string]any{"name": "absent"}}},
			}}
			return u
		}
		for _, name := range []string{"first", "first", "changed"} {
			Expect(k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(manifest(name)),
				client.FieldOwner("gitops"), client.ForceOwnership)).To(Succeed())
			si := &scimv1.ServiceIdentity{}
			Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: "from-git"}, si)).To(Succeed())
			Expect(si.Spec.DisplayName).To(Equal(name))
			Expect(si.Finalizers).To(ContainElement(scimv1.DeprovisionFinalizer), name)
		}
	})
})
