package controller

import (
	"context"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

func groupMembers(name string) []string {
	for _, g := range scimSrv.Groups.All() {
		if g["displayName"] != name {
			continue
		}
		var out []string
		members, _ := g["members"].([]any)
		for _, m := range members {
			out = append(out, m.(map[string]any)["value"].(string))
		}
		return out
	}
	return nil
}

// deleteAndWaitRevoked deletes the identities and waits until each is gone with no account left.
func deleteAndWaitRevoked(ctx context.Context, ns string, ids []*scimv1.ServiceIdentity) {
	GinkgoHelper()
	for _, si := range ids {
		Expect(k8s.Delete(ctx, si)).To(Succeed())
	}
	for _, si := range ids {
		Eventually(gone(ctx, si)).Should(BeTrue())
		Expect(accountsWithExternalID(ns, si.Name)()).To(BeEmpty())
	}
}

func gone(ctx context.Context, obj client.Object) func() bool {
	return func() bool { return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)) }
}

var _ = Describe("Groups, target guard and several targets", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = readyTargetNamespace(ctx) })
	AfterEach(func() { scimSrv.Faults.Clear() })

	It("keeps memberships exact for groups joined through the operator only", func() {
		g1, g2, other := "readers-"+ns, "writers-"+ns, "hand-made-"+ns
		scimSrv.Groups.Put(map[string]any{"displayName": g2, "members": []any{map[string]any{"value": "someone-else"}}})
		si := newIdentity(ns, "grouped", "acme")
		si.Spec.Groups = []string{g1, g2}
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		id := si.Status.Targets[0].ID
		Expect(groupMembers(g1)).To(ConsistOf(id))                 // created by the operator
		Expect(groupMembers(g2)).To(ConsistOf("someone-else", id)) // joined, others kept
		Expect(si.Status.Targets[0].Groups).To(ConsistOf(g1, g2))

		// A membership made by hand is not the operator's to remove.
		scimSrv.Groups.Put(map[string]any{"displayName": other, "members": []any{map[string]any{"value": id}}})
		update(ctx, si, func(si *scimv1.ServiceIdentity) { si.Spec.Groups = []string{g1} })
		Eventually(func() []string { return groupMembers(g2) }).Should(ConsistOf("someone-else"))
		Expect(groupMembers(g1)).To(ConsistOf(id))
		Expect(groupMembers(other)).To(ConsistOf(id))

		// Deletion leaves the groups; the operator-created group stays while others are in it.
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		Eventually(gone(ctx, si)).Should(BeTrue())
		Expect(groupMembers(g1)).To(BeEmpty())
		Expect(scimSrv.Groups.All()).To(ContainElement(HaveKeyWithValue("displayName", g2)))
	})

	It("keeps a target in use until its identities are gone", func() {
		t := &scimv1.ScimTarget{}
		Expect(k8s.Get(ctx, keyOf(ns, "acme"), t)).To(Succeed())
		Expect(t.Finalizers).To(ContainElement(scimv1.InUseFinalizer))
		si := newIdentity(ns, "user-of-target", "acme")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))

		Expect(k8s.Delete(ctx, t)).To(Succeed())
		Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, "InUse"))
		Expect(condition(t, scimv1.ConditionReady).Message).To(ContainSubstring(ns + "/user-of-target"))
		Expect(t.Status.Identities).To(Equal(int32(1)))

		Expect(k8s.Delete(ctx, si)).To(Succeed())
		Eventually(gone(ctx, si)).Should(BeTrue())
		Expect(accountsWithExternalID(ns, "user-of-target")()).To(BeEmpty())
		Eventually(gone(ctx, t)).Should(BeTrue())
	})

	It("deprovisions everything when a namespace's targets, secrets and identities go at once", func() {
		// What the namespace controller does: delete every object in the namespace.
		ids := readyIdentities(ctx, ns, "acme", "a", "b", "c")
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acme-token"}}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(secret), secret)).To(Succeed())
		target := &scimv1.ScimTarget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "acme"}}

		Expect(k8s.Delete(ctx, secret)).To(Succeed())
		Expect(k8s.Delete(ctx, target)).To(Succeed())
		deleteAndWaitRevoked(ctx, ns, ids)
		Eventually(gone(ctx, target)).Should(BeTrue())
		Eventually(gone(ctx, secret)).Should(BeTrue())
	})

	It("reports each target separately, one failing target not blocking the others", func() {
		broken := createTarget(ctx, ns, "broken", testToken, func(t *scimv1.ScimTarget) {
			t.Spec.Endpoint = "http://" + scimAddr + "/nowhere/v2"
		})
		Eventually(get(ctx, broken)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse))
		si := newIdentity(ns, "multi", "acme", "broken")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(accountsWithExternalID(ns, "multi")).Should(HaveLen(1))
		Eventually(get(ctx, si)).Should(WithTransform(func(s *scimv1.ServiceIdentity) []scimv1.TargetState {
			var out []scimv1.TargetState
			for _, e := range s.Status.Targets {
				out = append(out, e.State)
			}
			return out
		}, Equal([]scimv1.TargetState{scimv1.TargetStateProvisioned, scimv1.TargetStateError})))
		Expect(si).To(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse))
		Expect(si.Status.Targets[1].Message).To(ContainSubstring("404"))

		// Fix the second target: Ready only once both are.
		update(ctx, broken, func(broken *scimv1.ScimTarget) {
			broken.Spec.Endpoint = endpoint()
		})
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(si.Status.Targets).To(HaveLen(2))
	})

	It("surfaces the target's detail for a 400 and does not retry in a loop", func() {
		scimSrv.Faults.Add(scimserver.On(http.MethodPost, "/Users", scimserver.Fault{
			Status: http.StatusBadRequest, ScimType: "invalidValue", Detail: "userType Robot is not allowed"}))
		si := newIdentity(ns, "invalid", "acme")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionStalled, metav1.ConditionTrue, scimv1.ReasonRejected))
		Expect(condition(si, scimv1.ConditionStalled).Message).To(ContainSubstring("userType Robot is not allowed"))
		before := scimSrv.Requests(http.MethodPost, "Users")
		Consistently(func() int { return scimSrv.Requests(http.MethodPost, "Users") }, "2s").Should(Equal(before))
	})

	DescribeTable("validates identities with clear messages",
		func(mutate func(*scimv1.ServiceIdentity), message string) {
			si := newIdentity(ns, "invalid-spec", "acme")
			mutate(si)
			err := k8s.Create(ctx, si)
			Expect(err).To(HaveOccurred())
			Expect(err.Error()).To(ContainSubstring(message))
		},
		Entry("no targets", func(si *scimv1.ServiceIdentity) { si.Spec.TargetRefs = nil }, "spec.targetRefs"),
		Entry("an unknown target kind", func(si *scimv1.ServiceIdentity) { si.Spec.TargetRefs[0].Kind = "Webhook" }, "Unsupported value: \"Webhook\""),
		Entry("ttl and expiresAt together", func(si *scimv1.ServiceIdentity) {
			si.Spec.TTL = scimv1.DurationOf(time.Hour)
			si.Spec.ExpiresAt = scimv1.TimestampOf(time.Now().Add(time.Hour))
		}, "set either ttl or expiresAt, not both"),
		Entry("an owner that is not an e-mail", func(si *scimv1.ServiceIdentity) { si.Spec.Owner = "nobody" }, "spec.owner"),
	)
})

var _ = Describe("Target references", func() {
	ctx := context.Background()

	It("deprovisions the account on a target dropped from targetRefs and forgets its entry", func() {
		ns := readyTargetNamespace(ctx)
		other, err := scimserver.New(testToken)
		Expect(err).NotTo(HaveOccurred())
		Expect(other.Start("127.0.0.1:0")).To(Succeed())
		defer other.Stop()
		second := createTarget(ctx, ns, "second", testToken, func(t *scimv1.ScimTarget) { t.Spec.Endpoint = other.Endpoint() })
		Eventually(get(ctx, second)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))

		si := newIdentity(ns, "two-homes", "acme", "second")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(other.UsersWhere("externalId", externalIDOf(ns, "two-homes"))).To(HaveLen(1))

		update(ctx, si, func(si *scimv1.ServiceIdentity) { si.Spec.TargetRefs = si.Spec.TargetRefs[:1] })
		Eventually(func() []map[string]any { return other.UsersWhere("externalId", externalIDOf(ns, "two-homes")) }).Should(BeEmpty())
		Eventually(get(ctx, si)).Should(WithTransform(func(s *scimv1.ServiceIdentity) int { return len(s.Status.Targets) }, Equal(1)))
		Expect(accountsWithExternalID(ns, "two-homes")()).To(HaveLen(1))
		Expect(si).To(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
	})
})
