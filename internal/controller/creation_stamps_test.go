package controller

import (
	"context"
	"fmt"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/stampguard"
)

// awaitStampPolicies waits until the API server enforces the creation-stamps policies in
// namespace ns: a tenant's forged stamp is refused at creation (the validating policy), and a
// tenant's change of a stamp is put back (the mutating one). It returns what waits, once they
// are deleted, until the API server no longer applies them (a tenant's change sticks).
func awaitStampPolicies(ctx context.Context, ns string) (gone func()) {
	GinkgoHelper()
	const user = "stamp-probe"
	grant(ctx, ns, user, rbacv1.PolicyRule{APIGroups: []string{scimv1.GroupVersion.Group}, Resources: []string{"serviceidentities"},
		Verbs: []string{"get", "create", "patch"}})
	c := impersonating(user)
	Eventually(func() error {
		forged := newIdentity(ns, "", "absent")
		forged.GenerateName, forged.Annotations = "forged-", map[string]string{scimv1.TargetsAtCreationAnnotation: "ScimTarget/other"}
		return c.Create(ctx, forged)
	}).Should(MatchError(ContainSubstring("are set at creation by the scim-operator")))
	probe := newIdentity(ns, "", "absent")
	probe.GenerateName, probe.Annotations = "probe-", map[string]string{scimv1.TargetsAtCreationAnnotation: "ScimTarget/absent"}
	Expect(c.Create(ctx, probe)).To(Succeed())
	stamp := func(g Gomega) string {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(probe), probe)).To(Succeed())
		return probe.Annotations[scimv1.TargetsAtCreationAnnotation]
	}
	attempt := 0
	Eventually(func(g Gomega) {
		before := stamp(g)
		attempt++
		patch := fmt.Sprintf(`{"metadata":{"annotations":{"scim.nhi.dev/targets-at-creation":"ScimTarget/try-%d"}}}`, attempt)
		// Refused while only the validating policy is in force, changed while neither is.
		g.Expect(c.Patch(ctx, probe.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(patch)))).To(Succeed())
		g.Expect(stamp(g)).To(Equal(before))
	}).Should(Succeed())
	return func() {
		GinkgoHelper()
		Eventually(func(g Gomega) {
			attempt++
			want := fmt.Sprintf("ScimTarget/try-%d", attempt)
			g.Expect(c.Patch(ctx, probe.DeepCopy(), client.RawPatch(types.MergePatchType,
				[]byte(`{"metadata":{"annotations":{"scim.nhi.dev/targets-at-creation":"`+want+`"}}}`)))).To(Succeed())
			g.Expect(stamp(g)).To(Equal(want))
		}).Should(Succeed())
	}
}

// guardStamps installs, for the whole cluster as config/default does, the policies
// --creation-stamps-guarded relies on (creation-stamps and status-writers), and waits until
// the operator finds them in force and the API server enforces them; when the spec ends, until
// neither does any more (the next spec on this API server meets nothing of them).
func guardStamps(ctx context.Context) {
	GinkgoHelper()
	guarded := func() float64 { return metricValue("scim_operator_creation_stamps_guarded", nil) }
	probes := newNamespace(ctx)
	var gone func()
	DeferCleanup(func() { // after the policies' deletion, before the namespace's purge
		Eventually(guarded).Should(BeZero())
		if gone != nil {
			gone()
		}
	})
	installPolicies(ctx, "creation-stamps-policy.yaml", "guard", nil)
	installPolicies(ctx, "status-writers-policy.yaml", "guard", nil)
	Eventually(guarded).Should(Equal(1.0))
	gone = awaitStampPolicies(ctx, probes)
}

// labelled is a namespace of the spec carrying labels.
func labelled(ctx context.Context, labels map[string]string) string {
	GinkgoHelper()
	ns := newNamespace(ctx)
	Expect(k8s.Patch(ctx, &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": ns, "labels": labels}}}, client.Merge)).To(Succeed())
	return ns
}

// activeAccounts are the accounts of the identity ns/name that are not inactive.
func activeAccounts(ns, name string) func() []map[string]any {
	return func() []map[string]any {
		var active []map[string]any
		for _, u := range accountsWithExternalID(ns, name)() {
			if u["active"] != false {
				active = append(active, u)
			}
		}
		return active
	}
}

var _ = Describe("The creation stamps, guarded by config/admission's creation-stamps policy", func() {
	ctx := context.Background()
	const tenant = "stamp-tenant"
	tenantRule := rbacv1.PolicyRule{APIGroups: []string{scimv1.GroupVersion.Group}, Resources: []string{"serviceidentities"},
		Verbs: []string{"get", "list", "create", "update", "patch"}}
	stamps := func(ctx context.Context, si *scimv1.ServiceIdentity) func(Gomega) map[string]string {
		return func(g Gomega) map[string]string {
			got := &scimv1.ServiceIdentity{}
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), got)).To(Succeed())
			out := map[string]string{}
			for _, k := range []string{scimv1.TargetsAtCreationAnnotation, scimv1.WorkloadAtCreationAnnotation} {
				if v, ok := got.Annotations[k]; ok {
					out[k] = v
				}
			}
			return out
		}
	}

	It("refuses a tenant's forged stamps at creation, and a change without the mutating policy", func() {
		labels := map[string]string{"scim-test/creation-stamps": "validate"}
		ns := labelled(ctx, labels)
		grant(ctx, ns, tenant, tenantRule)
		c := impersonating(tenant)
		// The ValidatingAdmissionPolicy alone (a failed mutating one), bound to this namespace.
		installPolicies(ctx, "creation-stamps-policy.yaml", "", labels, "ValidatingAdmissionPolicy")

		create := func(name string, annotations map[string]string, owners ...metav1.OwnerReference) error {
			si := newIdentity(ns, name, "absent")
			si.Spec.TargetRefs = append(si.Spec.TargetRefs, scimv1.TargetReference{Kind: scimv1.KindClusterScimTarget, Name: "corp"})
			si.Annotations, si.OwnerReferences = annotations, owners
			return c.Create(ctx, si)
		}
		const refused = "are set at creation by the scim-operator"
		// A stamp naming fewer targets than the spec: the account on ClusterScimTarget corp would
		// be on no record.
		Eventually(func() error {
			return create("fewer", map[string]string{scimv1.TargetsAtCreationAnnotation: "ScimTarget/absent"})
		}).Should(MatchError(ContainSubstring(refused)))
		Expect(create("other-owner", map[string]string{scimv1.TargetsAtCreationAnnotation: "ScimTarget/absent,ClusterScimTarget/corp",
			scimv1.WorkloadAtCreationAnnotation: "ServiceAccount/someone/uid-9"})).To(MatchError(ContainSubstring(refused)))
		// None, or the ones the spec and the owner give, are what the mutating policy would write.
		Expect(create("none", nil)).To(Succeed())
		robot := metav1.OwnerReference{APIVersion: "v1", Kind: "ServiceAccount", Name: "robot", UID: "uid-1"}
		Expect(create("true", map[string]string{scimv1.TargetsAtCreationAnnotation: "ScimTarget/absent,ClusterScimTarget/corp",
			scimv1.WorkloadAtCreationAnnotation: "ServiceAccount/robot/uid-1"}, robot)).To(Succeed())

		// The operator stamps "none" with its finalizer (it may); the tenant may then change
		// neither stamp, nor remove one.
		si := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "none"}}
		Eventually(stamps(ctx, si)).Should(HaveKeyWithValue(scimv1.TargetsAtCreationAnnotation, "ScimTarget/absent,ClusterScimTarget/corp"))
		const changed = "only the scim-operator may change them"
		for _, patch := range []string{
			`{"metadata":{"annotations":{"scim.nhi.dev/targets-at-creation":"ScimTarget/absent"}}}`,
			`{"metadata":{"annotations":{"scim.nhi.dev/targets-at-creation":null}}}`,
			`{"metadata":{"annotations":{"scim.nhi.dev/workload-at-creation":"ServiceAccount/robot/uid-1"}}}`,
		} {
			Expect(c.Patch(ctx, si.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(patch)))).
				To(MatchError(ContainSubstring(changed)), patch)
		}
		// Other changes pass.
		Expect(c.Patch(ctx, si.DeepCopy(), client.RawPatch(types.MergePatchType,
			[]byte(`{"metadata":{"annotations":{"example.com/note":"hi"}},"spec":{"displayName":"Renamed"}}`)))).To(Succeed())
	})

	It("keeps them through a tenant's update, replace or server-side apply that would drop or change them", func() {
		labels := map[string]string{"scim-test/creation-stamps": "keep"}
		ns := labelled(ctx, labels)
		grant(ctx, ns, tenant, tenantRule)
		c := impersonating(tenant)
		installPolicies(ctx, "creation-stamps-policy.yaml", labels["scim-test/creation-stamps"], labels)

		// A manifest applied by GitOps (server-side apply), without stamps.
		manifest := func(displayName string) *unstructured.Unstructured {
			return &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": scimv1.GroupVersion.String(), "kind": "ServiceIdentity",
				"metadata": map[string]any{"namespace": ns, "name": "from-git"},
				"spec": map[string]any{"displayName": displayName, "targetRefs": []any{
					map[string]any{"name": "absent"}, map[string]any{"kind": "ClusterScimTarget", "name": "corp"}}},
			}}
		}
		Expect(c.Apply(ctx, client.ApplyConfigurationFromUnstructured(manifest("From Git")), client.FieldOwner("gitops"), client.ForceOwnership)).To(Succeed())
		si := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "from-git"}}
		want := map[string]string{scimv1.TargetsAtCreationAnnotation: "ScimTarget/absent,ClusterScimTarget/corp"}
		Eventually(stamps(ctx, si)).Should(Equal(want), "stamped by the operator with its finalizer")

		// Once the policies are in force, a change of a stamp is put back.
		awaitStampPolicies(ctx, ns)
		Expect(c.Patch(ctx, si.DeepCopy(), client.RawPatch(types.MergePatchType,
			[]byte(`{"metadata":{"annotations":{"scim.nhi.dev/targets-at-creation":"ScimTarget/absent"}}}`)))).To(Succeed())
		Expect(stamps(ctx, si)(Default)).To(Equal(want), "changed")
		Expect(c.Patch(ctx, si.DeepCopy(), client.RawPatch(types.MergePatchType,
			[]byte(`{"metadata":{"annotations":{"scim.nhi.dev/targets-at-creation":null}}}`)))).To(Succeed())
		Expect(stamps(ctx, si)(Default)).To(Equal(want), "removed")
		// A stamp the identity never had is not the mutating policy's to remove: refused.
		Expect(c.Patch(ctx, si.DeepCopy(), client.RawPatch(types.MergePatchType,
			[]byte(`{"metadata":{"annotations":{"scim.nhi.dev/workload-at-creation":"ServiceAccount/x/y"}}}`)))).
			To(MatchError(ContainSubstring("only the scim-operator may change them")))

		// A replace (PUT) of the object without annotations.
		Expect(c.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
		si.Annotations = nil
		si.Spec.DisplayName = "Replaced"
		Expect(c.Update(ctx, si)).To(Succeed())
		Expect(stamps(ctx, si)(Default)).To(Equal(want))
		Expect(si.Spec.DisplayName).To(Equal("Replaced"))

		// The same manifest applied again, and a changed one.
		Expect(c.Apply(ctx, client.ApplyConfigurationFromUnstructured(manifest("From Git")), client.FieldOwner("gitops"), client.ForceOwnership)).To(Succeed())
		Expect(c.Apply(ctx, client.ApplyConfigurationFromUnstructured(manifest("From Git, changed")), client.FieldOwner("gitops"), client.ForceOwnership)).To(Succeed())
		Expect(stamps(ctx, si)(Default)).To(Equal(want))
	})

	// unrecordable makes, with the stamps guarded, an identity on a ClusterScimTarget whose
	// status cannot be written, waits for its account, then adds a target the stamp does not
	// name (with mutate): every pass now needs a record before its first call, which cannot be
	// written.
	unrecordable := func(name string, mutate func(*scimv1.ServiceIdentity)) (string, *scimv1.ClusterScimTarget) {
		ns := newNamespace(ctx)
		guardStamps(ctx)
		cst := clusterTarget(ctx, name, []string{ns})
		DeferCleanup(refuseStatusWrites(ctx, ns))
		si := clusterIdentity(ns, name, cst.Name)
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(accountsWithExternalID(ns, name)).Should(ConsistOf(HaveKeyWithValue("active", true)))
		update(ctx, si, func(si *scimv1.ServiceIdentity) {
			si.Spec.TargetRefs = append(si.Spec.TargetRefs, scimv1.TargetReference{Name: "later"})
			mutate(si)
		})
		return ns, cst
	}

	It("the kill switch deactivates the account of an identity whose status cannot be written, whatever its spec names", func() {
		ns, _ := unrecordable("stuck", func(si *scimv1.ServiceIdentity) { si.Spec.Suspend = true })
		Eventually(activeAccounts(ns, "stuck"), "10s").Should(BeEmpty())
	})

	It("a target that withdraws the namespace takes the account of an identity whose record cannot be written away", func() {
		ns, cst := unrecordable("held", func(*scimv1.ServiceIdentity) {})
		allowOnly(ctx, cst, "someone-else")
		Eventually(activeAccounts(ns, "held"), "10s").Should(BeEmpty())
	})

	It("writes a Pending record first while the policies the flag promises are not found, and nothing before the POST once they are", func() {
		labels := map[string]string{"scim-test/creation-stamps": "first-post"}
		ns := labelled(ctx, labels)
		cst := clusterTarget(ctx, "first-post", []string{ns})
		first := func(name string) []scimv1.IdentityTargetStatus {
			si := clusterIdentity(ns, name, cst.Name)
			held, release := holdWrites(bodyNames(externalIDOf(ns, name)))
			DeferCleanup(release)
			Expect(k8s.Create(ctx, si)).To(Succeed())
			Eventually(held).Should(BeClosed())
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
			Expect(si.Annotations).To(HaveKeyWithValue(scimv1.TargetsAtCreationAnnotation, "ClusterScimTarget/"+cst.Name))
			whilePosting := si.Status.Targets
			release()
			Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
			return whilePosting
		}
		Expect(stampguard.InForce(ctx, k8s)).To(MatchError(ContainSubstring("creation-stamps or status-writers")))
		Expect(metricValue("scim_operator_creation_stamps_guarded", nil)).To(BeZero())
		Expect(first("unguarded")).To(ConsistOf(HaveField("State", scimv1.TargetStatePending)),
			"recorded before the POST: the stamps are not guarded")

		guardStamps(ctx)
		Expect(first("guarded")).To(BeEmpty(), "the POST is in flight and nothing was written before it: the stamp is the record")
	})
})

var _ = Describe("An identity on a ClusterScimTarget whose status cannot be written, creation stamps guarded", Serial, func() {
	ctx := context.Background()
	const tenant = "stamp-attacker"
	// tenantAccount makes, with the stamps guarded, a namespace whose identities' status cannot
	// be written (what a tenant can do to its own identity, an object grown to the size limit,
	// say, played by a policy that refuses every status write there) and the tenant's identity
	// name on a ClusterScimTarget; it returns once the account exists, with the tenant's client
	// and what lifts the refusal.
	tenantAccount := func(name string) (*scimv1.ServiceIdentity, *scimv1.ClusterScimTarget, client.Client, func()) {
		labels := map[string]string{"scim-test/creation-stamps": name}
		ns := labelled(ctx, labels)
		grant(ctx, ns, tenant, rbacv1.PolicyRule{APIGroups: []string{scimv1.GroupVersion.Group}, Resources: []string{"serviceidentities"},
			Verbs: []string{"get", "list", "create", "update", "patch"}})
		c := impersonating(tenant)
		guardStamps(ctx)
		cst := clusterTarget(ctx, name, []string{ns})
		allow := sync.OnceFunc(refuseStatusWrites(ctx, ns))
		DeferCleanup(allow)
		si := clusterIdentity(ns, name, cst.Name)
		Expect(c.Create(ctx, si)).To(Succeed())
		Eventually(accountsWithExternalID(ns, name)).Should(ConsistOf(HaveKeyWithValue("active", true)))
		return si, cst, c, allow
	}

	It("gets an account the stamp records, which a tenant cannot unrecord: dropping the target across a restart takes it away", func() {
		si, cst, c, _ := tenantAccount("bloated")
		ns := si.Namespace
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
		Expect(si.Status.Targets).To(BeEmpty())
		Expect(si.Annotations).To(HaveKeyWithValue(scimv1.TargetsAtCreationAnnotation, "ClusterScimTarget/"+cst.Name))

		// The operator goes down; meanwhile the tenant drops the target and the stamp, which is
		// put back (or, should the mutating policy fail, the change refused).
		killManager()
		Eventually(func(g Gomega) {
			g.Expect(c.Patch(ctx, si.DeepCopy(), client.RawPatch(types.MergePatchType,
				[]byte(`{"metadata":{"annotations":{"scim.nhi.dev/targets-at-creation":null}},"spec":{"targetRefs":[{"name":"elsewhere"}]}}`)))).To(Succeed())
		}).Should(Succeed())
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
		Expect(si.Spec.TargetRefs).To(ConsistOf(HaveField("Name", "elsewhere")))
		Expect(si.Annotations).To(HaveKeyWithValue(scimv1.TargetsAtCreationAnnotation, "ClusterScimTarget/"+cst.Name))

		// Back up with an empty memory: the stamped target, in neither spec nor status, is
		// deprovisioned as a dropped target.
		startManager()
		Eventually(activeAccounts(ns, "bloated"), "10s").Should(BeEmpty())
		Consistently(activeAccounts(ns, "bloated"), "1s").Should(BeEmpty())
	})

	It("keeps what the stamp recorded on the first status, even one written by a pass that provisions nothing", func() {
		si, cst, c, allow := tenantAccount("blocked")
		ns := si.Namespace
		// A spec that cannot be provisioned (its workload does not exist): the pass writes
		// conditions and no entry of its own, and that first status ends what the stamp says.
		Expect(c.Patch(ctx, si.DeepCopy(), client.RawPatch(types.MergePatchType,
			[]byte(`{"spec":{"workloadRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"missing"}}}`)))).To(Succeed())
		allow()
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse))
		Expect(si.Status.Targets).To(ContainElement(And(HaveField("Name", cst.Name), HaveField("Kind", scimv1.KindClusterScimTarget))),
			"the stamped target is on the first status")

		// The operator's memory goes; the tenant then drops the target: the status entry finds it.
		killManager()
		Expect(c.Patch(ctx, si.DeepCopy(), client.RawPatch(types.MergePatchType,
			[]byte(`{"spec":{"workloadRef":null,"targetRefs":[{"name":"elsewhere"}]}}`)))).To(Succeed())
		startManager()
		Eventually(activeAccounts(ns, "blocked"), "10s").Should(BeEmpty())
	})
})
