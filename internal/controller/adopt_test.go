package controller

import (
	"context"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

var _ = Describe("spec.adopt: taking over exactly the account an import named", func() {
	ctx := context.Background()

	It("adopts the named account on a ClusterScimTarget whose adoption is Named, and stamps our externalId", func() {
		ns := newNamespace(ctx)
		cst := clusterTarget(ctx, "adopt", []string{ns}, func(c *scimv1.ClusterScimTarget) { c.Spec.Adoption = scimv1.AdoptionNamed })
		id := scimSrv.Users.Put(map[string]any{"userName": "legacy-bot." + ns, "displayName": "made by hand", "active": true})
		si := newIdentity(ns, "legacy-bot")
		si.Spec.TargetRefs = []scimv1.TargetReference{{Kind: scimv1.KindClusterScimTarget, Name: cst.Name}}
		si.Spec.UserName = "legacy-bot." + ns
		si.Spec.Adopt = &scimv1.AdoptAccount{ID: id, UserName: "legacy-bot." + ns}
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue, scimv1.ReasonProvisioned))
		Expect(userOn(scimSrv, id)).To(HaveKeyWithValue("externalId", externalIDOf(ns, "legacy-bot")))
		Expect(si.Status.Targets[0].ID).To(Equal(id))
		Expect(scimSrv.UsersWhere("userName", "legacy-bot."+ns)).To(HaveLen(1), "adopted, not created beside it")
		Eventually(eventReasons(ctx, ns, "legacy-bot")).Should(ContainElement("Adopted"))
	})

	It("attack: an adopt naming an account that changed since the import (another userName, or an externalId now) takes nothing over", func() {
		ns := readyTargetNamespace(ctx)
		renamed := scimSrv.Users.Put(map[string]any{"userName": "jane.doe", "active": true})
		owned := scimSrv.Users.Put(map[string]any{"userName": "owned-bot." + ns, "externalId": "hr-system/owned", "active": true})
		for name, id := range map[string]string{"renamed-bot": renamed, "owned-bot": owned} {
			si := newIdentity(ns, name, "acme")
			si.Spec.UserName = name + "." + ns
			si.Spec.Adopt = &scimv1.AdoptAccount{ID: id, UserName: name + "." + ns}
			Expect(k8s.Create(ctx, si)).To(Succeed())
			// A human re-imports: nothing is adopted, and no second account is made beside it.
			Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionStalled, metav1.ConditionTrue, scimv1.ReasonAccountConflict))
		}
		Expect(userOn(scimSrv, renamed)).NotTo(HaveKey("externalId"), "jane.doe's account is never stamped")
		Expect(userOn(scimSrv, owned)).To(HaveKeyWithValue("externalId", "hr-system/owned"))
		Expect(accountsWithExternalID(ns, "renamed-bot")()).To(BeEmpty())
		Expect(accountsWithExternalID(ns, "owned-bot")()).To(BeEmpty())
	})

	It("attack: a tenant's adopt of an account outside its namespace's userNames on a shared ClusterScimTarget is refused by the guardrails", func() {
		ns := newNamespace(ctx)
		cst := clusterTarget(ctx, "adopt-guard", []string{ns})
		person := scimSrv.Users.Put(map[string]any{"userName": "ceo", "active": true})
		si := newIdentity(ns, "grab")
		si.Spec.TargetRefs = []scimv1.TargetReference{{Kind: scimv1.KindClusterScimTarget, Name: cst.Name}}
		si.Spec.UserName = "ceo"
		si.Spec.Adopt = &scimv1.AdoptAccount{ID: person, UserName: "ceo"}
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionStalled, metav1.ConditionTrue, scimv1.ReasonGuardrail))
		Consistently(func() map[string]any { return userOn(scimSrv, person) }, "2s").ShouldNot(HaveKey("externalId"))
	})
})
