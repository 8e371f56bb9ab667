package controller

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/dialect"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

var _ = Describe("Resource types beyond User", func() {
	ctx := context.Background()
	var agentTargetWith func(ns string, agents bool, opts []scimserver.Option, more ...func(*scimv1.ScimTarget)) *scimserver.Server

	// agentTarget starts a reference server (with the Agent resource type when agents) and a
	// target on it that provisions identities as Agents.
	agentTarget := func(ns string, agents bool, more ...func(*scimv1.ScimTarget)) *scimserver.Server {
		return agentTargetWith(ns, agents, nil, more...)
	}
	agentTargetWith = func(ns string, agents bool, opts []scimserver.Option, more ...func(*scimv1.ScimTarget)) *scimserver.Server {
		if agents && len(opts) == 0 {
			opts = append(opts, scimserver.WithAgents())
		}
		srv, err := scimserver.New(testToken, opts...)
		Expect(err).NotTo(HaveOccurred())
		Expect(srv.Start("127.0.0.1:0")).To(Succeed())
		DeferCleanup(srv.Stop)
		t := createTarget(ctx, ns, "agents", testToken, func(t *scimv1.ScimTarget) {
			t.Spec.Endpoint = srv.Endpoint()
			t.Spec.ResourceType = "Agent"
			t.Spec.ResyncInterval = scimv1.DurationOf(30 * time.Second)
			for _, f := range more {
				f(t)
			}
		})
		Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		return srv
	}

	It("provisions, updates and revokes identities as Agents where /ResourceTypes advertises them, and says so", func() {
		ns := newNamespace(ctx)
		srv := agentTarget(ns, true)
		t := &scimv1.ScimTarget{}
		Expect(k8s.Get(ctx, keyOf(ns, "agents"), t)).To(Succeed())
		Expect(t.Status.ResourceType).NotTo(BeNil())
		Expect([]string{t.Status.ResourceType.Name, t.Status.ResourceType.Endpoint, t.Status.ResourceType.Schema}).
			To(Equal([]string{"Agent", "/Agents", dialect.SchemaAgent}))
		Expect(t.Status.ResourceType.NameAttribute).To(Equal("name"), "the provider's /Schemas has draft-abbey's Agent")

		si := newIdentity(ns, "helpdesk", "agents")
		si.Spec.DisplayName = "Helpdesk agent"
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		agents := func() []map[string]any {
			var out []map[string]any
			for _, a := range srv.Agents.All() {
				if a["externalId"] == externalIDOf(ns, "helpdesk") {
					out = append(out, a)
				}
			}
			return out
		}
		Expect(agents()).To(ConsistOf(SatisfyAll(HaveKeyWithValue("name", "helpdesk."+ns), HaveKeyWithValue("displayName", "Helpdesk agent"))))
		Expect(srv.UsersWhere("externalId", externalIDOf(ns, "helpdesk"))).To(BeEmpty(), "no User was made")
		Expect(si.Status.Targets[0].UserName).To(Equal("helpdesk." + ns))

		update(ctx, si, func(si *scimv1.ServiceIdentity) { si.Spec.DisplayName = "Renamed" })
		Eventually(func() any { return agents()[0]["displayName"] }).Should(Equal("Renamed"))

		Expect(k8s.Delete(ctx, si)).To(Succeed())
		Eventually(gone(ctx, si)).Should(BeTrue())
		Expect(agents()).To(BeEmpty())
	})

	It("makes draft-wzdk Agents: named by agentUserName, a displayName, and the owner as a reference to the owner's User", func() {
		ns := newNamespace(ctx)
		// The target is its own owner directory: the people's Users and the Agents they own.
		srv := agentTargetWith(ns, true, []scimserver.Option{scimserver.WithWZDKAgents()}, func(t *scimv1.ScimTarget) {
			t.Spec.Governance = &scimv1.Governance{OwnerDirectory: &scimv1.OwnerDirectory{Name: "agents"}}
		})
		alice := srv.Users.Put(map[string]any{"userName": "alice", "emails": []any{map[string]any{"value": "alice@example.com"}}, "active": true})
		t := &scimv1.ScimTarget{}
		Expect(k8s.Get(ctx, keyOf(ns, "agents"), t)).To(Succeed())
		Expect(t.Status.ResourceType.NameAttribute).To(Equal("agentUserName"))
		Expect(t.Status.ResourceType.Message).To(ContainSubstring("draft-wzdk"))

		si := newIdentity(ns, "report-bot", "agents")
		si.Spec.Owner = "alice@example.com"
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(si.Status.Owner).NotTo(BeNil())
		Expect(si.Status.Owner.Accounts).To(ConsistOf(scimv1.OwnerAccount{Directory: "ScimTarget/" + ns + "/agents", ID: alice}))
		agent := func() map[string]any {
			for _, a := range srv.Agents.All() {
				if a["externalId"] == externalIDOf(ns, "report-bot") {
					return a
				}
			}
			return nil
		}
		Eventually(agent).Should(SatisfyAll(
			HaveKeyWithValue("agentUserName", "report-bot."+ns),
			HaveKeyWithValue("displayName", "report-bot."+ns), // required: the name when the spec sets none
			HaveKeyWithValue("active", true),
			HaveKeyWithValue("owners", ConsistOf(SatisfyAll(
				HaveKeyWithValue("value", alice), HaveKeyWithValue("$ref", srv.Endpoint()+"/Users/"+alice)))),
			Not(HaveKey("name")),
		))

		By("an administrator removes owners on the provider: the next sweep finds it, and the identity writes it back")
		Expect(srv.Agents.Mutate(fmt.Sprint(agent()["id"]), func(a map[string]any) { delete(a, "owners") })).To(BeTrue())
		sweepNow(ctx, t)
		Eventually(func() any { return agent()["owners"] }).Should(ConsistOf(HaveKeyWithValue("value", alice)))

		By("the owner changes: the Agent names the new one")
		bob := srv.Users.Put(map[string]any{"userName": "bob", "emails": []any{map[string]any{"value": "bob@example.com"}}, "active": true})
		update(ctx, si, func(si *scimv1.ServiceIdentity) { si.Spec.Owner = "bob@example.com" })
		Eventually(func() any { return agent()["owners"] }).Should(ConsistOf(HaveKeyWithValue("value", bob)))

		By("suspended and deleted as any account")
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		Eventually(gone(ctx, si)).Should(BeTrue())
		Expect(agent()).To(BeNil())
	})

	It("writes a draft-wzdk Agent without owners where the provider refuses them, and says so on the target", func() {
		ns := newNamespace(ctx)
		srv := agentTargetWith(ns, true, []scimserver.Option{scimserver.WithWZDKAgents()}, func(t *scimv1.ScimTarget) {
			t.Spec.Governance = &scimv1.Governance{OwnerDirectory: &scimv1.OwnerDirectory{Name: "agents"}}
		})
		srv.Users.Put(map[string]any{"userName": "alice", "emails": []any{map[string]any{"value": "alice@example.com"}}, "active": true})
		// owners are read-only on this provider: any write that carries them is refused.
		srv.Faults.Add(func(r *http.Request) *scimserver.Fault {
			if r.Body == nil || r.Method == http.MethodGet {
				return nil
			}
			b, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(b))
			if bytes.Contains(b, []byte(`"owners"`)) {
				return &scimserver.Fault{Status: http.StatusBadRequest, ScimType: "mutability", Detail: "owners is readOnly"}
			}
			return nil
		})
		si := newIdentity(ns, "report-bot", "agents")
		si.Spec.Owner = "alice@example.com"
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(srv.Agents.All()).To(ConsistOf(SatisfyAll(HaveKeyWithValue("agentUserName", "report-bot."+ns), Not(HaveKey("owners")))))
		t := &scimv1.ScimTarget{}
		Eventually(func() []scimv1.Adaptation {
			Expect(k8s.Get(ctx, keyOf(ns, "agents"), t)).To(Succeed())
			return t.Status.Adaptations
		}).Should(ContainElement(SatisfyAll(
			HaveField("Name", "OwnersRefused"), HaveField("Message", ContainSubstring("owners is readOnly")))))

		By("a sweep does not count the missing owners as drift")
		Expect(sweepNow(ctx, t).Flagged).To(BeZero())
	})

	It("falls back to a User with userType Agent where the provider has no Agents", func() {
		ns := newNamespace(ctx)
		srv := agentTarget(ns, false)
		t := &scimv1.ScimTarget{}
		Expect(k8s.Get(ctx, keyOf(ns, "agents"), t)).To(Succeed())
		Expect(t.Status.ResourceType.Name).To(Equal("Agent"))
		Expect(t.Status.ResourceType.Endpoint).To(Equal("/Users"))
		Expect(t.Status.ResourceType.Message).To(ContainSubstring("userType Agent"))

		si := newIdentity(ns, "fallback", "agents")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		users := srv.UsersWhere("externalId", externalIDOf(ns, "fallback"))
		Expect(users).To(HaveLen(1))
		Expect(users[0]).To(SatisfyAll(HaveKeyWithValue("userName", "fallback."+ns), HaveKeyWithValue("userType", "Agent")))
	})

	It("refuses to change a target's resource type once set", func() {
		ns := newNamespace(ctx)
		createTarget(ctx, ns, "typed", testToken)
		// Read afresh each time: the operator's finalizer may land between the create and the
		// update, and a conflict is not the refusal this spec is about.
		Eventually(func() error {
			fresh := &scimv1.ScimTarget{}
			if err := k8s.Get(ctx, keyOf(ns, "typed"), fresh); err != nil {
				return err
			}
			fresh.Spec.ResourceType = "Agent"
			return k8s.Update(ctx, fresh)
		}).Should(MatchError(ContainSubstring("resourceType cannot be changed")))
	})
})
