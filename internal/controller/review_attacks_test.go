package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// Security review of the 2026-11 changes: specs that play the attacks and fail where the
// operator gives way.
var _ = Describe("Attacks on governance, expiry, account ownership and group membership", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace(ctx) })
	AfterEach(func() { scimSrv.Faults.Clear() })

	It("suspends an identity whose owner left even when the tenant blocks its spec during the grace", func() {
		person("carol."+ns, "carol@"+ns+".example", true)
		fastTarget(ctx, ns, "people")
		governed(ctx, ns, "app", &scimv1.Governance{
			OwnerDirectory: &scimv1.OwnerDirectory{Name: "people"},
			OwnerInactive:  &scimv1.OwnerInactivePolicy{Action: scimv1.OwnerInactiveSuspend, Grace: scimv1.DurationOf(3 * time.Second)},
		})
		update(ctx, &scimv1.ScimTarget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}}, func(t *scimv1.ScimTarget) {
			t.Spec.Guardrails = &scimv1.Guardrails{Groups: &scimv1.AllowList{Allowed: []string{"app-*"}}}
		})
		si := newIdentity(ns, "frozen-bot", "app")
		si.Spec.Owner = "carol@" + ns + ".example"
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(accountOf(ns, "frozen-bot")["active"]).To(BeTrue())

		By("the owner leaves; the tenant sees OwnerInactive and freezes the spec with a group the guardrails refuse")
		carol := scimSrv.UsersWhere("userName", "carol."+ns)[0]["id"].(string)
		scimSrv.Users.Mutate(carol, func(a map[string]any) { a["active"] = false })
		requestResync(ctx, si)
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionOwnerActive, metav1.ConditionFalse, scimv1.ReasonOwnerInactive))
		update(ctx, si, func(si *scimv1.ServiceIdentity) { si.Spec.Groups = []string{"not-allowed"} })

		By("the grace passes: the account must be suspended (the identity wakes when it ends)")
		Eventually(func() any { return accountOf(ns, "frozen-bot")["active"] }, "15s").Should(Equal(false),
			"governance suspension is bypassed by a blocked spec")
	})

	It("suspends an identity whose owner left even when the tenant clears spec.owner on a requireOwner target", func() {
		person("dave."+ns, "dave@"+ns+".example", true)
		fastTarget(ctx, ns, "people")
		governed(ctx, ns, "app", &scimv1.Governance{
			RequireOwner:   true,
			OwnerDirectory: &scimv1.OwnerDirectory{Name: "people"},
			OwnerInactive:  &scimv1.OwnerInactivePolicy{Action: scimv1.OwnerInactiveSuspend, Grace: scimv1.DurationOf(3 * time.Second)},
		})
		si := newIdentity(ns, "ownerless-bot", "app")
		si.Spec.Owner = "dave@" + ns + ".example"
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))

		dave := scimSrv.UsersWhere("userName", "dave."+ns)[0]["id"].(string)
		scimSrv.Users.Mutate(dave, func(a map[string]any) { a["active"] = false })
		requestResync(ctx, si)
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionOwnerActive, metav1.ConditionFalse, scimv1.ReasonOwnerInactive))
		update(ctx, si, func(si *scimv1.ServiceIdentity) { si.Spec.Owner = "" })

		Eventually(func() any { return accountOf(ns, "ownerless-bot")["active"] }, "15s").Should(Equal(false),
			"an identity without an owner on a requireOwner target keeps an active account")
	})

	It("does not leave an account active past the target's maxTTL because the identity says Orphan", func() {
		governed(ctx, ns, "bounded", &scimv1.Governance{MaxTTL: scimv1.DurationOf(time.Minute)})
		si := newIdentity(ns, "immortal", "bounded")
		orphan := scimv1.DeletionPolicyOrphan
		si.Spec.DeletionPolicy = &orphan
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Eventually(get(ctx, si), "100s").Should(HaveCondition(scimv1.ConditionExpired, metav1.ConditionTrue, scimv1.ReasonExpired))
		// The target's policy applies (its default, Delete): the identity's Orphan does not keep it.
		Expect(accountsWithExternalID(ns, "immortal")()).To(SatisfyAny(BeEmpty(), ConsistOf(HaveKeyWithValue("active", false))),
			"the account outlives the target's maxTTL, active")
	})

	It("never deactivates or deletes an account that no longer carries our externalId (provider ignores If-Match)", func() {
		fastTarget(ctx, ns, "app")
		si := newIdentity(ns, "bot", "app")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		id := si.Status.Targets[0].ID
		Expect(si.Status.Targets[0].Version).NotTo(BeEmpty())

		By("the provider sends versions but does not enforce If-Match (many do)")
		scimSrv.Faults.Add(func(r *http.Request) *scimserver.Fault {
			if r.Method == http.MethodPatch && strings.Contains(r.URL.Path, "/Users/") {
				r.Header.Del("If-Match")
			}
			return nil
		})
		By("an administrator hands the account to a person: it no longer carries our externalId")
		Expect(scimSrv.Users.Mutate(id, func(a map[string]any) {
			a["externalId"] = "hr/person-42"
			a["userName"] = "jane.doe." + ns
		})).To(BeTrue())

		Expect(k8s.Delete(ctx, si)).To(Succeed())
		Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, keyOf(ns, "bot"), si)) }).Should(BeTrue())
		jane := scimSrv.UsersWhere("userName", "jane.doe."+ns)
		Expect(jane).To(HaveLen(1), "the person's account was deleted by the revocation on record")
		Expect(jane[0]["active"]).To(BeTrue(), "the person's account was deactivated by the revocation on record")
	})

	It("does not drop a group's other members when PATCH is refused and the group is read without members", func() {
		srv, err := scimserver.New(testToken)
		Expect(err).NotTo(HaveOccurred())
		Expect(srv.Start("127.0.0.1:0")).To(Succeed())
		DeferCleanup(srv.Stop)
		srv.SetQuirks(scimserver.Quirks{PatchUnsupported: true})
		human := srv.Users.Put(map[string]any{"userName": "erin", "active": true})
		gid := srv.Groups.Put(map[string]any{"displayName": "shared", "members": []any{map[string]any{"value": human}}})
		// GET /Groups/{id} without members (RFC 7643 "returned: request"; AWS IAM Identity Center never returns them).
		body, _ := json.Marshal(map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"}, "id": gid, "displayName": "shared"})
		srv.Faults.Add(scimserver.On(http.MethodGet, "/Groups/"+gid, scimserver.Fault{Body: string(body)}))

		t := createTarget(ctx, ns, "nopatch", testToken, func(t *scimv1.ScimTarget) {
			t.Spec.Endpoint = "http://" + srv.Addr() + scimserver.BasePath
		})
		Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		si := newIdentity(ns, "joiner", "nopatch")
		si.Spec.Groups = []string{"shared"}
		Expect(k8s.Create(ctx, si)).To(Succeed())
		// Joining by a PUT of a group read without its members could drop them: refused, and said.
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse))
		Expect(condition(si, scimv1.ConditionReady).Message).To(ContainSubstring("did not return group"))
		var members []string
		for _, g := range srv.Groups.All() {
			if g["id"] == gid {
				ms, _ := g["members"].([]any)
				for _, m := range ms {
					members = append(members, fmt.Sprint(m.(map[string]any)["value"]))
				}
			}
		}
		Expect(members).To(ContainElement(human), "the person was removed from the shared group by the member-list PUT")
	})
})
