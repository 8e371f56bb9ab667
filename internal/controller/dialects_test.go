package controller

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/dialect"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// The dialect matrix: the core flows against a reference server started with every quirk
// profile of test/scimserver (PROFILES.md), over real HTTP. Every (profile, flow) runs and must
// pass, as it is or through an adaptation (dialectAdapted).

// dialectFlows are the flows, in the order the matrix prints them.
var dialectFlows = []string{"provision", "adopt", "update", "groups", "suspend", "drift", "orphans", "revoke"}

const verdictPass = "pass"

// dialectAdapted lists the flows that pass against a profile because the operator adapts: the
// adaptation must then be on the target's status.adaptations, and the matrix says "adapted".
var dialectAdapted = map[string]map[string]string{
	"lying-spc": {
		"adopt": dialect.AdaptPatchRefused, "update": dialect.AdaptPatchRefused, "groups": dialect.AdaptPatchRefused,
		"suspend": dialect.AdaptPatchRefused, "drift": dialect.AdaptPatchRefused, "revoke": dialect.AdaptPatchRefused,
	},
	"case-sensitive-filters": {"adopt": dialect.AdaptCaseInsensitive},
	"aws-identity-center":    {"orphans": dialect.AdaptListWithoutFilter},
	"put-merges":             {"update": dialect.AdaptUpdateWithPut, "drift": dialect.AdaptUpdateWithPut},
}

// dialectTargets adapts the target to a profile where the flows would otherwise not exercise
// the quirk: put-merges only bites when updates go by PUT.
var dialectTargets = map[string]func(*scimv1.ScimTarget){
	"put-merges": func(t *scimv1.ScimTarget) {
		t.Spec.Compatibility = &scimv1.Compatibility{PatchMode: scimv1.PatchModePut}
	},
}

// dialectMatrix collects the outcome of every (profile, flow) for the report.
var dialectMatrix = struct {
	sync.Mutex
	rows map[string]map[string]string
}{rows: map[string]map[string]string{}}

func recordDialect(profile, flow, outcome string) {
	dialectMatrix.Lock()
	defer dialectMatrix.Unlock()
	if dialectMatrix.rows[profile] == nil {
		dialectMatrix.rows[profile] = map[string]string{}
	}
	dialectMatrix.rows[profile][flow] = outcome
}

// dialectMatrixTable renders the matrix: profile × flow → pass / needs-adaptation /
// unsupported (with why) / FAILED.
func dialectMatrixTable() string {
	dialectMatrix.Lock()
	defer dialectMatrix.Unlock()
	var b strings.Builder
	b.WriteString("| profile | " + strings.Join(dialectFlows, " | ") + " |\n|---|" + strings.Repeat("---|", len(dialectFlows)) + "\n")
	for _, p := range scimserver.Profiles() {
		row, ok := dialectMatrix.rows[p.Name]
		if !ok {
			continue
		}
		b.WriteString("| " + p.Name + " |")
		for _, f := range dialectFlows {
			out := row[f]
			if out == "" {
				out = "not run"
			}
			b.WriteString(" " + out + " |")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// dialectEnv is one profile's server, namespace and target.
type dialectEnv struct {
	srv *scimserver.Server
	ns  string
}

func (e *dialectEnv) accounts(name string) []map[string]any {
	return e.srv.UsersWhere("externalId", externalIDOf(e.ns, name))
}

func (e *dialectEnv) account(name string) map[string]any {
	if a := e.accounts(name); len(a) == 1 {
		return a[0]
	}
	return nil
}

func (e *dialectEnv) members(group string) []string {
	for _, g := range e.srv.Groups.All() {
		if g["displayName"] != group {
			continue
		}
		out := []string{}
		members, _ := g["members"].([]any)
		for _, m := range members {
			out = append(out, fmt.Sprint(m.(map[string]any)["value"]))
		}
		return out
	}
	return nil
}

// ready creates an identity on the profile's target and waits for Ready.
func (e *dialectEnv) ready(ctx context.Context, name string, mutate ...func(*scimv1.ServiceIdentity)) *scimv1.ServiceIdentity {
	GinkgoHelper()
	si := newIdentity(e.ns, name, "dialect")
	for _, m := range mutate {
		m(si)
	}
	Expect(k8s.Create(ctx, si)).To(Succeed())
	Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
	Eventually(func() map[string]any { return e.account(name) }).ShouldNot(BeNil())
	return si
}

// dialectFlowSpecs are the flows; each uses its own identity on the profile's target.
var dialectFlowSpecs = map[string]func(ctx context.Context, e *dialectEnv){
	"provision": func(ctx context.Context, e *dialectEnv) {
		si := e.ready(ctx, "prov", func(si *scimv1.ServiceIdentity) { si.Spec.DisplayName = "Provisioned" })
		a := e.account("prov")
		Expect(a["userName"]).To(Equal("prov." + e.ns))
		Expect(a["displayName"]).To(Equal("Provisioned"))
		Expect(a["active"]).To(BeTrue())
		Expect(si.Status.Targets[0].ID).To(Equal(a["id"]))
	},
	"adopt": func(ctx context.Context, e *dialectEnv) {
		// Made by hand, no externalId, userName in another case (userName is caseExact=false).
		id := e.srv.Users.Put(map[string]any{"userName": "Adopt-Me." + e.ns, "active": true})
		si := e.ready(ctx, "adopt-me")
		Expect(si.Status.Targets[0].ID).To(Equal(id))
		Expect(e.account("adopt-me")["id"]).To(Equal(id))
		Expect(e.srv.UsersWhere("userName", "adopt-me."+e.ns)).To(HaveLen(1))
	},
	"update": func(ctx context.Context, e *dialectEnv) {
		si := e.ready(ctx, "upd", func(si *scimv1.ServiceIdentity) { si.Spec.DisplayName = "First" })
		update(ctx, si, func(si *scimv1.ServiceIdentity) { si.Spec.DisplayName = "Second" })
		Eventually(func() any { return e.account("upd")["displayName"] }).Should(Equal("Second"))
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
	},
	"groups": func(ctx context.Context, e *dialectEnv) {
		g := "dialect-readers-" + e.ns
		e.srv.Groups.Put(map[string]any{"displayName": g, "members": []any{map[string]any{"value": "someone-else"}}})
		si := e.ready(ctx, "grp", func(si *scimv1.ServiceIdentity) { si.Spec.Groups = []string{g} })
		id := si.Status.Targets[0].ID
		Eventually(func() []string { return e.members(g) }).Should(ConsistOf("someone-else", id))
		update(ctx, si, func(si *scimv1.ServiceIdentity) { si.Spec.Groups = nil })
		Eventually(func() []string { return e.members(g) }).Should(ConsistOf("someone-else"))
		Consistently(func() []string { return e.members(g) }, "500ms").Should(ConsistOf("someone-else"))
	},
	"suspend": func(ctx context.Context, e *dialectEnv) {
		si := e.ready(ctx, "susp")
		update(ctx, si, func(si *scimv1.ServiceIdentity) { si.Spec.Suspend = true })
		Eventually(func() any { return e.account("susp")["active"] }).Should(Equal(false))
		update(ctx, si, func(si *scimv1.ServiceIdentity) { si.Spec.Suspend = false })
		Eventually(func() any { return e.account("susp")["active"] }).Should(Equal(true))
	},
	"drift": func(ctx context.Context, e *dialectEnv) {
		si := e.ready(ctx, "drift", func(si *scimv1.ServiceIdentity) { si.Spec.DisplayName = "The real name" })
		id := e.account("drift")["id"].(string)
		e.srv.Users.Mutate(id, func(a map[string]any) { a["displayName"] = "tampered"; a["active"] = false })
		requestResync(ctx, si)
		Eventually(func() []any { a := e.account("drift"); return []any{a["displayName"], a["active"]} }).
			Should(Equal([]any{"The real name", true}))
	},
	"orphans": func(ctx context.Context, e *dialectEnv) {
		// The ghost was put on the server before the target was made (its one scan, interval 1h).
		t := &scimv1.ScimTarget{}
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: e.ns, Name: "dialect"}, t)).To(Succeed())
			g.Expect(t.Status.Orphans).NotTo(BeNil())
			g.Expect(t.Status.Orphans.UserNames).To(ConsistOf("000-ghost." + e.ns))
			g.Expect(t.Status.Orphans.Count).To(Equal(int32(1)))
		}).Should(Succeed())
		Expect(e.account("ghost")["active"]).To(BeTrue(), "Report leaves it alone")
	},
	"revoke": func(ctx context.Context, e *dialectEnv) {
		g := "dialect-revoked-" + e.ns
		si := e.ready(ctx, "rev", func(si *scimv1.ServiceIdentity) { si.Spec.Groups = []string{g} })
		id := si.Status.Targets[0].ID
		Eventually(func() []string { return e.members(g) }).Should(ConsistOf(id))
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		Eventually(gone(ctx, si)).Should(BeTrue())
		Expect(e.accounts("rev")).To(BeEmpty())
		Expect(e.members(g)).NotTo(ContainElement(id), "the revoked account is in no group")
	},
}

// The matrix is printed after the suite when any dialect spec ran.
var _ = ReportAfterSuite("dialect matrix", func(Report) {
	dialectMatrix.Lock()
	ran := len(dialectMatrix.rows) > 0
	dialectMatrix.Unlock()
	if ran {
		fmt.Printf("\nDialect matrix (profile × flow):\n%s\n", dialectMatrixTable())
	}
})

var _ = Describe("Dialect matrix", func() {
	ctx := context.Background()

	for _, profile := range scimserver.Profiles() {
		Context("against the "+profile.Name+" dialect", Ordered, ContinueOnFailure, func() {
			env := &dialectEnv{}
			BeforeAll(func() {
				srv, err := scimserver.New(testToken, scimserver.WithProfile(profile))
				Expect(err).NotTo(HaveOccurred())
				Expect(srv.Start("127.0.0.1:0")).To(Succeed())
				DeferCleanup(srv.Stop)
				env.srv, env.ns = srv, newNamespace(ctx)
				env.srv.Users.Put(map[string]any{"userName": "000-ghost." + env.ns, "externalId": externalIDOf(env.ns, "ghost"), "active": true})
				createTarget(ctx, env.ns, "dialect", testToken, func(t *scimv1.ScimTarget) {
					t.Spec.Endpoint = srv.Endpoint()
					t.Spec.ResyncInterval = scimv1.DurationOf(30 * time.Second)
					t.Spec.Adoption = scimv1.AdoptionIfNoExternalID
					t.Spec.Orphans = &scimv1.Orphans{Policy: scimv1.OrphanPolicyReport, Interval: scimv1.DurationOf(time.Hour)}
					if tweak := dialectTargets[profile.Name]; tweak != nil {
						tweak(t)
					}
				})
				// Before the server stops: the identities left go without SCIM calls (the
				// server and its accounts are thrown away), so no reconcile keeps dialling it.
				DeferCleanup(func() {
					var list scimv1.ServiceIdentityList
					Expect(k8s.List(ctx, &list, client.InNamespace(env.ns))).To(Succeed())
					for i := range list.Items {
						si := &list.Items[i]
						update(ctx, si, func(si *scimv1.ServiceIdentity) {
							if si.Annotations == nil {
								si.Annotations = map[string]string{}
							}
							si.Annotations[scimv1.ForceOrphanAnnotation] = "true"
						})
						Expect(client.IgnoreNotFound(k8s.Delete(ctx, si))).To(Succeed())
					}
					for i := range list.Items {
						Eventually(gone(ctx, &list.Items[i])).Should(BeTrue())
					}
				})
				Eventually(get(ctx, &scimv1.ScimTarget{ObjectMeta: metav1.ObjectMeta{Namespace: env.ns, Name: "dialect"}})).
					Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
			})
			for _, flow := range dialectFlows {
				It(flow, func() {
					recordDialect(profile.Name, flow, "FAILED")
					dialectFlowSpecs[flow](ctx, env)
					name, adapted := dialectAdapted[profile.Name][flow]
					if !adapted {
						recordDialect(profile.Name, flow, verdictPass)
						return
					}
					t := &scimv1.ScimTarget{}
					Eventually(func(g Gomega) []string {
						g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: env.ns, Name: "dialect"}, t)).To(Succeed())
						var names []string
						for _, a := range t.Status.Adaptations {
							names = append(names, a.Name)
						}
						return names
					}).Should(ContainElement(name), "the target says which adaptation is in effect")
					recordDialect(profile.Name, flow, "adapted ("+name+")")
				})
			}
		})
	}
})
