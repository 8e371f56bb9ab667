package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// The attacks of issue 11 played by a tenant with rights in one namespace (ServiceIdentity,
// ScimTarget, Secret; status writes too, where a spec says so) against a shared operator.
// Attacks by a hostile provider or through the network are in attacks_provider_test.go,
// attacks on credentials in attacks_secrets_test.go.

// clusterTarget creates a ClusterScimTarget on the reference server whose token lives in the
// cluster-resource namespace, and waits until it is Ready.
func clusterTarget(ctx context.Context, name string, allowed []string, mutate ...func(*scimv1.ClusterScimTarget)) *scimv1.ClusterScimTarget {
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, GenerateName: name + "-token-"},
		StringData: map[string]string{"token": testToken}}
	Expect(k8s.Create(ctx, secret)).To(Succeed())
	cst := &scimv1.ClusterScimTarget{
		ObjectMeta: metav1.ObjectMeta{GenerateName: name + "-"},
		Spec: scimv1.ClusterScimTargetSpec{ScimTargetSpec: scimv1.ScimTargetSpec{
			Endpoint: endpoint(), AllowInsecureHTTP: true,
			Auth: scimv1.Auth{BearerToken: &scimv1.BearerTokenAuth{SecretKeyRef: scimv1.SecretKeySelector{Name: secret.Name, Key: "token"}}},
		}},
	}
	if allowed != nil {
		cst.Spec.AllowedNamespaces = &scimv1.AllowedNamespaces{Names: allowed}
	}
	for _, m := range mutate {
		m(cst)
	}
	Expect(k8s.Create(ctx, cst)).To(Succeed())
	Eventually(get(ctx, cst)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
	return cst
}

// allowOnly sets a ClusterScimTarget's allowedNamespaces.names.
func allowOnly(ctx context.Context, cst *scimv1.ClusterScimTarget, names ...string) {
	update(ctx, cst, func(cst *scimv1.ClusterScimTarget) {
		cst.Spec.AllowedNamespaces.Names = names
	})
}

func clusterIdentity(ns, name, target string) *scimv1.ServiceIdentity {
	si := newIdentity(ns, name)
	si.Spec.TargetRefs = []scimv1.TargetReference{{Kind: scimv1.KindClusterScimTarget, Name: target}}
	return si
}

func withAttributes(si *scimv1.ServiceIdentity, attrs string) *scimv1.ServiceIdentity {
	si.Spec.Attributes = &apiextensionsv1.JSON{Raw: []byte(attrs)}
	return si
}

func userByID(id string) map[string]any {
	for _, u := range scimSrv.Users.All() {
		if u["id"] == id {
			return u
		}
	}
	return nil
}

// stalledWith waits for the identity to be Stalled with reason and returns its message.
func stalledWith(ctx context.Context, si *scimv1.ServiceIdentity, reason string) string {
	Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionStalled, metav1.ConditionTrue, reason))
	Expect(si).To(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, reason))
	return condition(si, scimv1.ConditionStalled).Message
}

var _ = Describe("Attacks by a tenant", func() {
	ctx := context.Background()
	AfterEach(func() { scimSrv.Faults.Clear() })

	Context("taking over a person's account", func() {
		It("does not adopt, write to or delete a person's account with the same userName", func() {
			ns := readyTargetNamespace(ctx)
			person := map[string]any{"userName": "ceo-" + ns, "displayName": "The CEO", "active": true}
			id := scimSrv.Users.Put(person)
			before := userByID(id)
			si := withAttributes(newIdentity(ns, "impostor", "acme"), `{"title":"pwned"}`)
			si.Spec.UserName = "CEO-" + ns // userNames compare case-insensitively on the target
			Expect(k8s.Create(ctx, si)).To(Succeed())
			msg := stalledWith(ctx, si, scimv1.ReasonAccountConflict)
			Expect(msg).To(And(ContainSubstring("without an externalId"), ContainSubstring("spec.adoption")))
			Expect(userByID(id)).To(Equal(before))

			Expect(k8s.Delete(ctx, si)).To(Succeed())
			Eventually(gone(ctx, si)).Should(BeTrue())
			Expect(userByID(id)).To(Equal(before), "the person's account is neither deactivated nor deleted")
		})

		It("never adopts an account with another externalId, even where adoption is allowed", func() {
			ns := newNamespace(ctx)
			createTarget(ctx, ns, "adopting", testToken, func(t *scimv1.ScimTarget) { t.Spec.Adoption = scimv1.AdoptionIfNoExternalID })
			id := scimSrv.Users.Put(map[string]any{"userName": "owned." + ns, "externalId": "other-cluster/" + ns + "/owned", "active": true})
			before := userByID(id)
			si := newIdentity(ns, "owned", "adopting")
			Expect(k8s.Create(ctx, si)).To(Succeed())
			Expect(stalledWith(ctx, si, scimv1.ReasonAccountConflict)).To(ContainSubstring("another externalId"))
			Expect(userByID(id)).To(Equal(before))
		})
	})

	Context("acting on a status id alone", func() {
		It("does not write to or delete the account a forged status id points to", func() {
			ns := readyTargetNamespace(ctx)
			victim := scimSrv.Users.Put(map[string]any{"userName": "victim." + ns, "displayName": "Victim", "active": true})
			before := userByID(victim)
			si := newIdentity(ns, "forger", "acme")
			Expect(k8s.Create(ctx, si)).To(Succeed())
			Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
			ours := si.Status.Targets[0].ID

			// A tenant who may write the status points the entry at someone else's account.
			patch := client.MergeFrom(si.DeepCopy())
			si.Status.Targets[0].ID = victim
			Expect(k8s.Status().Patch(ctx, si, patch)).To(Succeed())
			update(ctx, si, func(si *scimv1.ServiceIdentity) { si.Spec.DisplayName = "Forged" })
			Eventually(func() any { return userByID(ours)["displayName"] }).Should(Equal("Forged"))
			Eventually(get(ctx, si)).Should(WithTransform(func(s *scimv1.ServiceIdentity) string { return s.Status.Targets[0].ID }, Equal(ours)))
			Expect(userByID(victim)).To(Equal(before))

			patch = client.MergeFrom(si.DeepCopy())
			si.Status.Targets[0].ID = victim
			Expect(k8s.Status().Patch(ctx, si, patch)).To(Succeed())
			Expect(k8s.Delete(ctx, si)).To(Succeed())
			Eventually(gone(ctx, si)).Should(BeTrue())
			Expect(userByID(ours)).To(BeNil(), "our account is deleted")
			Expect(userByID(victim)).To(Equal(before), "the victim's account is untouched")
		})

		It("does not write to an account a POST answer names instead of the one created", func() {
			ns := readyTargetNamespace(ctx)
			victim := scimSrv.Users.Put(map[string]any{"userName": "victim-post." + ns, "active": true})
			before := userByID(victim)
			answer, err := json.Marshal(map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"},
				"id": victim, "userName": "liar." + ns})
			Expect(err).NotTo(HaveOccurred())
			scimSrv.Faults.Add(func(r *http.Request) *scimserver.Fault {
				if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/Users") {
					return &scimserver.Fault{Body: string(answer)}
				}
				return nil
			})
			si := newIdentity(ns, "liar", "acme")
			Expect(k8s.Create(ctx, si)).To(Succeed())
			Expect(stalledWith(ctx, si, scimv1.ReasonAccountConflict)).To(ContainSubstring("read back"))
			Expect(userByID(victim)).To(Equal(before))
			Expect(k8s.Delete(ctx, si)).To(Succeed())
			Eventually(gone(ctx, si)).Should(BeTrue())
			Expect(userByID(victim)).To(Equal(before))
		})

		It("stalls provisioning on duplicate accounts and deprovisions every one of ours", func() {
			ns := readyTargetNamespace(ctx)
			a := scimSrv.Users.Put(map[string]any{"userName": "dup-a." + ns, "externalId": externalIDOf(ns, "dup"), "active": true})
			b := scimSrv.Users.Put(map[string]any{"userName": "dup-b." + ns, "externalId": externalIDOf(ns, "dup"), "active": true})
			beforeA, beforeB := userByID(a), userByID(b)
			si := newIdentity(ns, "dup", "acme")
			si.Spec.DisplayName = "Not written to either"
			Expect(k8s.Create(ctx, si)).To(Succeed())
			Expect(stalledWith(ctx, si, scimv1.ReasonAccountConflict)).To(ContainSubstring("2 accounts"))
			Expect(userByID(a)).To(Equal(beforeA))
			Expect(userByID(b)).To(Equal(beforeB))

			Expect(k8s.Delete(ctx, si)).To(Succeed())
			Eventually(gone(ctx, si)).Should(BeTrue())
			Expect(accountsWithExternalID(ns, "dup")()).To(BeEmpty(), "both duplicates are deprovisioned")
		})

		It("refuses a listed account without an id instead of deleting /Users/", func() {
			ns := readyTargetNamespace(ctx)
			si := newIdentity(ns, "idless", "acme")
			Expect(k8s.Create(ctx, si)).To(Succeed())
			Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
			var mu sync.Mutex
			bare := 0
			list, err := json.Marshal(map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:ListResponse"},
				"totalResults": 1, "Resources": []any{map[string]any{"userName": "idless." + ns, "externalId": externalIDOf(ns, "idless")}}})
			Expect(err).NotTo(HaveOccurred())
			scimSrv.Faults.Add(func(r *http.Request) *scimserver.Fault {
				if strings.HasSuffix(r.URL.Path, "/Users/") {
					mu.Lock()
					bare++
					mu.Unlock()
				}
				if r.Method == http.MethodGet && strings.Contains(r.URL.Query().Get("filter"), externalIDOf(ns, "idless")) {
					return &scimserver.Fault{Body: string(list)}
				}
				if r.Method == http.MethodPatch && r.Header.Get("If-Match") != "" {
					// The account on record changed: the revocation must look it up (and meets the list above).
					return &scimserver.Fault{Status: http.StatusPreconditionFailed, Detail: "version mismatch"}
				}
				return nil
			})
			Expect(k8s.Delete(ctx, si)).To(Succeed())
			Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonDeprovisionBlocked))
			Expect(condition(si, scimv1.ConditionReady).Message).To(ContainSubstring("malformed"))
			Expect(si.Finalizers).To(ContainElement(scimv1.DeprovisionFinalizer))
			mu.Lock()
			Expect(bare).To(BeZero(), "no request went to /Users/ without an id")
			mu.Unlock()
			scimSrv.Faults.Clear()
			Eventually(gone(ctx, si)).Should(BeTrue())
			Expect(accountsWithExternalID(ns, "idless")()).To(BeEmpty())
		})
	})

	Context("joining any group and setting any attribute", func() {
		It("cannot claim a userName, group or attribute a shared target does not allow", func() {
			ns := newNamespace(ctx)
			cst := clusterTarget(ctx, "shared", []string{ns})
			admins := "Domain Admins " + ns
			cases := map[string]*scimv1.ServiceIdentity{
				`group "` + admins + `"`: func() *scimv1.ServiceIdentity {
					si := clusterIdentity(ns, "joiner", cst.Name)
					si.Spec.Groups = []string{admins}
					return si
				}(),
				`attribute "roles"`: withAttributes(clusterIdentity(ns, "roler", cst.Name), `{"roles":[{"value":"admin"}]}`),
				`attribute "title"`: withAttributes(clusterIdentity(ns, "titler", cst.Name), `{"title":"x"}`),
				`userName "admin"`: func() *scimv1.ServiceIdentity {
					si := clusterIdentity(ns, "squatter", cst.Name)
					si.Spec.UserName = "admin"
					return si
				}(),
			}
			for want, si := range cases {
				Expect(k8s.Create(ctx, si)).To(Succeed())
				Expect(stalledWith(ctx, si, scimv1.ReasonGuardrail)).To(ContainSubstring(want))
				Expect(accountsWithExternalID(ns, si.Name)()).To(BeEmpty(), want)
			}
			Expect(scimSrv.Groups.All()).NotTo(ContainElement(HaveKeyWithValue("displayName", admins)))
			Expect(scimSrv.UsersWhere("userName", "admin")).To(BeEmpty())

			// What the cluster admin lists is allowed, by pattern and case-insensitively.
			allowing := clusterTarget(ctx, "allowing", []string{ns}, func(t *scimv1.ClusterScimTarget) {
				t.Spec.Guardrails = &scimv1.Guardrails{Groups: &scimv1.AllowList{Allowed: []string{"Team-*"}},
					Attributes: &scimv1.AllowList{Allowed: []string{"title"}}}
			})
			ok := withAttributes(clusterIdentity(ns, "member", allowing.Name), `{"Title":"Engineer"}`)
			ok.Spec.Groups = []string{"team-" + ns}
			Expect(k8s.Create(ctx, ok)).To(Succeed())
			Eventually(get(ctx, ok)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		})

		It("loses the groups a ClusterScimTarget stops allowing", func() {
			ns := newNamespace(ctx)
			cst := clusterTarget(ctx, "narrowed", []string{ns}, func(t *scimv1.ClusterScimTarget) {
				t.Spec.Guardrails = &scimv1.Guardrails{Groups: &scimv1.AllowList{Allowed: []string{"prod-admins-*", "readers-*"}}}
			})
			si := clusterIdentity(ns, "escalated", cst.Name)
			si.Spec.Groups = []string{"prod-admins-" + ns, "readers-" + ns}
			Expect(k8s.Create(ctx, si)).To(Succeed())
			Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
			id := si.Status.Targets[0].ID
			members := func(group string) []string {
				var ids []string
				for _, g := range scimSrv.Groups.All() {
					if g["displayName"] == group {
						ms, _ := g["members"].([]any)
						for _, m := range ms {
							if mm, ok := m.(map[string]any); ok {
								ids = append(ids, fmt.Sprint(mm["value"]))
							}
						}
					}
				}
				return ids
			}
			Expect(members("prod-admins-" + ns)).To(ContainElement(id))

			update(ctx, cst, func(cst *scimv1.ClusterScimTarget) {
				cst.Spec.Guardrails.Groups.Allowed = []string{"readers-*"}
			})
			Eventually(func() []string { return members("prod-admins-" + ns) }).ShouldNot(ContainElement(id))
			Expect(members("readers-" + ns)).To(ContainElement(id))
			Expect(stalledWith(ctx, si, scimv1.ReasonGuardrail)).To(ContainSubstring(`group "prod-admins-` + ns))
		})

		It("cannot pass off an e-mail address ending in its namespace as a namespaced userName", func() {
			ns := newNamespace(ctx)
			cst := clusterTarget(ctx, "mailish", []string{ns}, func(t *scimv1.ClusterScimTarget) {
				t.Spec.Adoption = scimv1.AdoptionIfNoExternalID
			})
			person := scimSrv.Users.Put(map[string]any{"userName": "ceo@acme." + ns, "active": true})
			before := userByID(person)
			si := clusterIdentity(ns, "ceo", cst.Name)
			si.Spec.UserName = "ceo@acme." + ns
			Expect(k8s.Create(ctx, si)).To(Succeed())
			Expect(stalledWith(ctx, si, scimv1.ReasonGuardrail)).To(ContainSubstring("userName"))
			Expect(userByID(person)).To(Equal(before))
		})

		It("cannot set a sensitive attribute on its own target unless the target names it", func() {
			ns := readyTargetNamespace(ctx)
			si := withAttributes(newIdentity(ns, "passworder", "acme"), `{"Password":"hunter2"}`)
			Expect(k8s.Create(ctx, si)).To(Succeed())
			Expect(stalledWith(ctx, si, scimv1.ReasonGuardrail)).To(ContainSubstring(`attribute "Password"`))
			Expect(accountsWithExternalID(ns, "passworder")()).To(BeEmpty())
		})

		DescribeTable("cannot reach a reserved attribute through spec.attributes, whatever its case or form",
			func(attrs string) {
				ns := readyTargetNamespace(ctx)
				si := withAttributes(newIdentity(ns, "sneaky", "acme"), attrs)
				si.Spec.Suspend = true
				Expect(k8s.Create(ctx, si)).To(Succeed())
				stalledWith(ctx, si, scimv1.ReasonInvalidSpec)
				Consistently(func() []map[string]any {
					return scimSrv.UsersWhereFunc(func(u map[string]any) bool {
						return u["externalId"] == externalIDOf(ns, "sneaky") && u["active"] == true
					})
				}, "1s").Should(BeEmpty())
			},
			Entry("Active: true re-activating a suspended account", `{"Active":true}`),
			Entry("EXTERNALID", `{"EXTERNALID":"someone-else"}`),
			Entry("the core User schema URN", `{"urn:ietf:params:scim:schemas:core:2.0:User":{"active":true}}`),
			Entry("the core Agent schema URN (its owners, its name)", `{"urn:ietf:params:scim:schemas:core:2.0:Agent":{"active":true,"owners":[{"value":"victim"}]}}`),
			Entry("an Agent's owners", `{"Owners":[{"value":"victim"}]}`),
			Entry("a PATCH path in a name", `{"emails[type eq \"work\"].value":"x@example.com"}`),
		)
	})

	Context("stopping every tenant's revocation with one object", func() {
		DescribeTable("the API server refuses a malformed duration or timestamp, saying what is wrong",
			func(create func(ns string) client.Object, message string) {
				ns := newNamespace(ctx)
				err := k8s.Create(ctx, create(ns))
				Expect(err).To(HaveOccurred())
				Expect(err.Error()).To(ContainSubstring(message))
			},
			Entry("ttl: banana", func(ns string) client.Object {
				si := newIdentity(ns, "poison", "acme")
				si.Spec.TTL = ptr.To(scimv1.Duration("banana"))
				return si
			}, "spec.ttl"),
			Entry("ttl: 0s", func(ns string) client.Object {
				si := newIdentity(ns, "poison", "acme")
				si.Spec.TTL = ptr.To(scimv1.Duration("0s"))
				return si
			}, "ttl must be a positive duration"),
			Entry("expiresAt with a lower-case t and z", func(ns string) client.Object {
				si := newIdentity(ns, "poison", "acme")
				si.Spec.ExpiresAt = ptr.To(scimv1.Timestamp("2030-01-01t00:00:00z"))
				return si
			}, "spec.expiresAt"),
			Entry("resyncInterval: banana", func(ns string) client.Object {
				return poisonTarget(ns, func(t *scimv1.ScimTarget) { t.Spec.ResyncInterval = ptr.To(scimv1.Duration("banana")) })
			}, "spec.resyncInterval"),
			Entry("resyncInterval: 1s", func(ns string) client.Object {
				return poisonTarget(ns, func(t *scimv1.ScimTarget) { t.Spec.ResyncInterval = ptr.To(scimv1.Duration("1s")) })
			}, "resyncInterval must be at least 30s"),
			Entry("orphans.interval: 1s", func(ns string) client.Object {
				return poisonTarget(ns, func(t *scimv1.ScimTarget) { t.Spec.Orphans = &scimv1.Orphans{Interval: ptr.To(scimv1.Duration("1s"))} })
			}, "orphans.interval must be at least 30s"),
		)

		It("cannot poison the informers through a status write", func() {
			ns := readyTargetNamespace(ctx)
			si := newIdentity(ns, "status-poison", "acme")
			Expect(k8s.Create(ctx, si)).To(Succeed())
			Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
			lowerCase := []byte(`{"status":{"deprovisionedAt":"2030-01-01t00:00:00z"}}`)

			By("a status time Go cannot parse is refused by the API server, whoever writes it")
			err := k8s.Status().Patch(ctx, si, client.RawPatch(types.MergePatchType, lowerCase))
			Expect(err).To(MatchError(ContainSubstring("status.deprovisionedAt")))

			By("and a tenant may not write the status at all (config/admission)")
			// Bound to this spec's namespace only: the suite's other specs write statuses as admin.
			nsObj := &corev1.Namespace{}
			Expect(k8s.Get(ctx, client.ObjectKey{Name: ns}, nsObj)).To(Succeed())
			nsObj.Labels = map[string]string{"scim-test/status-writers": "on"}
			Expect(k8s.Update(ctx, nsObj)).To(Succeed())
			installPolicies(ctx, "status-writers-policy.yaml", "", nsObj.Labels, "ValidatingAdmissionPolicy")
			grant(ctx, ns, "mallory", rbacv1.PolicyRule{APIGroups: []string{scimv1.GroupVersion.Group},
				Resources: []string{"serviceidentities", "serviceidentities/status"}, Verbs: []string{"get", "update", "patch"}})
			mallory := impersonating("mallory")
			forged := []byte(`{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Forged","message":"","lastTransitionTime":"2030-01-01t00:00:00z"}]}}`)
			Eventually(func() error {
				return mallory.Status().Patch(ctx, si, client.RawPatch(types.MergePatchType, forged), client.DryRunAll)
			}).Should(MatchError(ContainSubstring("only the scim-operator writes the status")))
			Expect(mallory.Status().Patch(ctx, si, client.RawPatch(types.MergePatchType, forged))).NotTo(Succeed())

			By("the operator keeps serving this namespace")
			other := newIdentity(ns, "after-poison", "acme")
			Expect(k8s.Create(ctx, other)).To(Succeed())
			Eventually(get(ctx, other)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		})

		It("keeps the cache syncing and revocation working with an object stored before the rules existed", func() {
			ns := readyTargetNamespace(ctx)
			poison := newIdentity(ns, "stored-before", "acme")
			poison.Spec.TTL = ptr.To(scimv1.Duration("banana"))
			withoutDurationRules(ctx, func() { Expect(k8s.Create(ctx, poison)).To(Succeed()) })

			// A restarted operator: a new cache lists every identity, the poison one included.
			c, err := cache.New(testEnv.Config, cache.Options{Scheme: testScheme})
			Expect(err).NotTo(HaveOccurred())
			_, err = c.GetInformer(ctx, &scimv1.ServiceIdentity{})
			Expect(err).NotTo(HaveOccurred())
			cacheCtx, stop := context.WithCancel(ctx)
			defer stop()
			go func() { _ = c.Start(cacheCtx) }()
			syncCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			Expect(c.WaitForCacheSync(syncCtx)).To(BeTrue(), "the informer syncs")

			// The running operator reports the value, and revokes others' accounts as usual.
			Expect(stalledWith(ctx, poison, scimv1.ReasonInvalidSpec)).To(ContainSubstring(`"banana" is not a positive duration`))
			other := newIdentity(ns, "unaffected", "acme")
			Expect(k8s.Create(ctx, other)).To(Succeed())
			Eventually(get(ctx, other)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
			Expect(k8s.Delete(ctx, other)).To(Succeed())
			Eventually(accountsWithExternalID(ns, "unaffected")).Should(BeEmpty())
			Expect(k8s.Delete(ctx, poison)).To(Succeed())
			Eventually(gone(ctx, poison)).Should(BeTrue())
		})
	})

	Context("tripping or bypassing the mass-deletion breaker", func() {
		It("keeps the breaker's window across a restart", Serial, func() {
			ns := newNamespace(ctx)
			t := fastTarget(ctx, ns, "guarded", func(t *scimv1.ScimTarget) {
				t.Spec.CircuitBreaker = &scimv1.CircuitBreaker{MaxDeletionsPerInterval: 2, Interval: scimv1.DurationOf(time.Hour)}
			})
			ids := readyIdentities(ctx, ns, "guarded", "mass-a", "mass-b", "mass-c")
			remaining := func() int {
				n := 0
				for _, si := range ids {
					n += len(accountsWithExternalID(ns, si.Name)())
				}
				return n
			}
			for _, si := range ids {
				Expect(k8s.Delete(ctx, si)).To(Succeed())
			}
			Eventually(remaining).Should(Equal(1))
			Eventually(get(ctx, t)).Should(WithTransform(func(t *scimv1.ScimTarget) int32 {
				if t.Status.CircuitBreaker == nil {
					return -1
				}
				return t.Status.CircuitBreaker.Charged
			}, Equal(int32(2))))

			stopMgr()
			Eventually(mgrDone, "30s").Should(BeClosed())
			startManager()
			Consistently(remaining, "3s").Should(Equal(1), "a restart does not open a new window")
			Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionStalled, metav1.ConditionTrue, scimv1.ReasonBreakerOpen))

			update(ctx, t, func(t *scimv1.ScimTarget) {
				t.Spec.CircuitBreaker.MaxDeletionsPerInterval = 3
			})
			Eventually(remaining).Should(Equal(0))
		})

		It("is charged neither by a namespace the target refuses nor for accounts that do not exist", func() {
			allowed, refused := newNamespace(ctx), newNamespace(ctx)
			cst := clusterTarget(ctx, "tripwire", []string{allowed}, func(t *scimv1.ClusterScimTarget) {
				t.Spec.CircuitBreaker = &scimv1.CircuitBreaker{MaxDeletionsPerInterval: 1, Interval: scimv1.DurationOf(time.Hour)}
			})
			for _, name := range []string{"noise-a", "noise-b", "noise-c"} {
				si := clusterIdentity(refused, name, cst.Name)
				Expect(k8s.Create(ctx, si)).To(Succeed())
				stalledWith(ctx, si, scimv1.ReasonNamespaceForbidden)
				Expect(k8s.Delete(ctx, si)).To(Succeed())
				Eventually(gone(ctx, si)).Should(BeTrue())
			}
			real := clusterIdentity(allowed, "real", cst.Name)
			Expect(k8s.Create(ctx, real)).To(Succeed())
			Eventually(get(ctx, real)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
			Expect(k8s.Delete(ctx, real)).To(Succeed())
			Eventually(gone(ctx, real)).Should(BeTrue())
			Expect(accountsWithExternalID(allowed, "real")()).To(BeEmpty())
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(cst), cst)).To(Succeed())
			Expect(cst.Status.CircuitBreaker).NotTo(BeNil())
			Expect(cst.Status.CircuitBreaker.Charged).To(Equal(int32(1)))
		})
	})

	Context("keeping accounts after access is withdrawn", func() {
		It("deprovisions a namespace's accounts when a ClusterScimTarget stops allowing it", func() {
			ns := newNamespace(ctx)
			cst := clusterTarget(ctx, "withdrawn", []string{ns}, func(t *scimv1.ClusterScimTarget) {
				t.Spec.DeletionPolicy = scimv1.DeletionPolicyDeactivate
			})
			si := clusterIdentity(ns, "tenant-bot", cst.Name)
			Expect(k8s.Create(ctx, si)).To(Succeed())
			Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
			Expect(accountOf(ns, "tenant-bot")["active"]).To(BeTrue())

			allowOnly(ctx, cst, "someone-else")
			Eventually(func() any { return accountOf(ns, "tenant-bot")["active"] }).Should(Equal(false))
			Expect(stalledWith(ctx, si, scimv1.ReasonNamespaceForbidden)).To(ContainSubstring("deprovisioned"))
			Eventually(eventReasons(ctx, ns, "tenant-bot")).Should(ContainElement("AccessWithdrawn"))
		})

		It("withdraws despite the identity's own Orphan policy or a spec that cannot be provisioned", func() {
			ns := newNamespace(ctx)
			cst := clusterTarget(ctx, "withdrawn-hard", []string{ns}, func(t *scimv1.ClusterScimTarget) {
				t.Spec.DeletionPolicy = scimv1.DeletionPolicyDelete
				// The admin lets identities choose Orphan: a withdrawal still does not honour it.
				t.Spec.Guardrails = &scimv1.Guardrails{DeletionPolicies: []scimv1.DeletionPolicy{
					scimv1.DeletionPolicyDelete, scimv1.DeletionPolicyDeactivate, scimv1.DeletionPolicyOrphan}}
			})
			orphaner := clusterIdentity(ns, "orphaner", cst.Name)
			orphaner.Spec.DeletionPolicy = ptr.To(scimv1.DeletionPolicyOrphan)
			blocked := clusterIdentity(ns, "blocked", cst.Name)
			for _, si := range []*scimv1.ServiceIdentity{orphaner, blocked} {
				Expect(k8s.Create(ctx, si)).To(Succeed())
				Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
			}
			// The tenant makes one spec unprovisionable before access goes.
			update(ctx, blocked, func(si *scimv1.ServiceIdentity) { withAttributes(si, `{"Active":true}`) })
			stalledWith(ctx, blocked, scimv1.ReasonInvalidSpec)

			allowOnly(ctx, cst, "someone-else")
			Eventually(accountsWithExternalID(ns, "orphaner")).Should(BeEmpty(), "the target's Delete, not the identity's Orphan")
			Eventually(accountsWithExternalID(ns, "blocked")).Should(BeEmpty())
			Expect(stalledWith(ctx, orphaner, scimv1.ReasonNamespaceForbidden)).To(ContainSubstring("deprovisioned"))
		})

		It("allows no namespace when allowedNamespaces is unset", func() {
			ns := newNamespace(ctx)
			cst := clusterTarget(ctx, "unset", nil)
			si := clusterIdentity(ns, "hopeful", cst.Name)
			Expect(k8s.Create(ctx, si)).To(Succeed())
			Expect(stalledWith(ctx, si, scimv1.ReasonNamespaceForbidden)).To(ContainSubstring("allows no namespace"))
			Expect(accountsWithExternalID(ns, "hopeful")()).To(BeEmpty())
		})
	})

	It("cannot learn which identities exist in other namespaces from its own target's orphan report", func() {
		ns, other := newNamespace(ctx), newNamespace(ctx)
		present := newIdentity(other, "present", "acme")
		present.Spec.TargetRefs = []scimv1.TargetReference{{Name: "absent-target"}} // exists, provisions nothing
		Expect(k8s.Create(ctx, present)).To(Succeed())
		// The tenant's server lists accounts that name other namespaces' identities.
		probes := []string{
			scimSrv.Users.Put(map[string]any{"userName": "000-probe-present." + ns, "externalId": externalIDOf(other, "present")}),
			scimSrv.Users.Put(map[string]any{"userName": "000-probe-absent." + ns, "externalId": externalIDOf(other, "absent")}),
			scimSrv.Users.Put(map[string]any{"userName": "000-own-ghost." + ns, "externalId": externalIDOf(ns, "ghost")}),
		}
		DeferCleanup(func() {
			for _, id := range probes {
				scimSrv.Users.Remove(id)
			}
		})
		t := fastTarget(ctx, ns, "nosy", func(t *scimv1.ScimTarget) {
			t.Spec.Orphans = &scimv1.Orphans{Policy: scimv1.OrphanPolicyReport, Interval: scimv1.DurationOf(time.Hour)}
		})
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(t), t)).To(Succeed())
			g.Expect(t.Status.Orphans).NotTo(BeNil())
			g.Expect(t.Status.Orphans.UserNames).To(ContainElement("000-own-ghost." + ns))
		}).Should(Succeed())
		Expect(t.Status.Orphans.UserNames).NotTo(ContainElement(HavePrefix("000-probe-")),
			"accounts of another namespace are not judged (absent would read as an orphan, present not)")
	})

	It("cannot have the operator PUT back what the provider returned beyond User attributes", func() {
		ns := newNamespace(ctx)
		fastTarget(ctx, ns, "put", func(t *scimv1.ScimTarget) {
			t.Spec.Compatibility = &scimv1.Compatibility{PatchMode: scimv1.PatchModePut}
		})
		si := newIdentity(ns, "echo", "put")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		id := si.Status.Targets[0].ID

		// The provider (or whatever the endpoint really is) answers with more than a User.
		served := map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"},
			"id": id, "userName": "echo." + ns, "externalId": externalIDOf(ns, "echo"), "active": true,
			"internalConfig": "db-password=s3cret", "urn:example:internal": map[string]any{"token": "s3cret"}}
		body, err := json.Marshal(served)
		Expect(err).NotTo(HaveOccurred())
		var mu sync.Mutex
		var puts []string
		scimSrv.Faults.Add(func(r *http.Request) *scimserver.Fault {
			switch {
			case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/Users/"+id):
				return &scimserver.Fault{Body: string(body)}
			case r.Method == http.MethodPut:
				b, _ := io.ReadAll(r.Body)
				r.Body = io.NopCloser(bytes.NewReader(b))
				mu.Lock()
				puts = append(puts, string(b))
				mu.Unlock()
			}
			return nil
		})
		update(ctx, si, func(si *scimv1.ServiceIdentity) { si.Spec.DisplayName = "Echo" })
		Eventually(func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), puts...) }).
			Should(ContainElement(ContainSubstring(`"displayName":"Echo"`)))
		mu.Lock()
		defer mu.Unlock()
		for _, p := range puts {
			Expect(p).NotTo(ContainSubstring("s3cret"))
			var sent map[string]any
			Expect(json.Unmarshal([]byte(p), &sent)).To(Succeed())
			Expect(sent).NotTo(HaveKey("internalConfig"))
			Expect(sent).NotTo(HaveKey("urn:example:internal"))
		}
	})
})

// poisonTarget is a ScimTarget that is valid but for what mutate sets.
func poisonTarget(ns string, mutate func(*scimv1.ScimTarget)) *scimv1.ScimTarget {
	t := bearerTarget(ns, "poison", "s", "https://scim.example.com")
	t.Spec.AllowInsecureHTTP = false
	mutate(t)
	return t
}

// readyIdentities creates identities on target and waits until each is Ready.
func readyIdentities(ctx context.Context, ns, target string, names ...string) []*scimv1.ServiceIdentity {
	GinkgoHelper()
	var ids []*scimv1.ServiceIdentity
	for _, name := range names {
		si := newIdentity(ns, name, target)
		Expect(k8s.Create(ctx, si)).To(Succeed())
		ids = append(ids, si)
	}
	for _, si := range ids {
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
	}
	return ids
}

// withoutDurationRules runs fn while the ServiceIdentity CRD has no pattern or CEL rule on
// spec.ttl, as a CRD from before those rules would, and restores the CRD afterwards.
func withoutDurationRules(ctx context.Context, fn func()) {
	s := runtime.NewScheme()
	Expect(apiextensionsv1.AddToScheme(s)).To(Succeed())
	c, err := client.New(testEnv.Config, client.Options{Scheme: s})
	Expect(err).NotTo(HaveOccurred())
	crd := &apiextensionsv1.CustomResourceDefinition{}
	key := client.ObjectKey{Name: "serviceidentities." + scimv1.GroupVersion.Group}
	Expect(c.Get(ctx, key, crd)).To(Succeed())
	original := crd.Spec.Versions[0].DeepCopy()
	spec := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]
	spec.Properties["ttl"] = apiextensionsv1.JSONSchemaProps{Type: "string"}
	crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"] = spec
	Expect(c.Update(ctx, crd)).To(Succeed())
	// The API server picks a new schema up within moments: probe it with dry-run creates.
	probe := func() error {
		si := newIdentity("default", "schema-probe", "none")
		si.Spec.TTL = ptr.To(scimv1.Duration("banana"))
		return k8s.Create(ctx, si, client.DryRunAll)
	}
	defer func() {
		Eventually(func() error {
			if err := c.Get(ctx, key, crd); err != nil {
				return err
			}
			crd.Spec.Versions[0] = *original
			return c.Update(ctx, crd)
		}).Should(Succeed())
		Eventually(probe).ShouldNot(Succeed(), "the rules are back for the specs that follow")
	}()
	Eventually(probe).Should(Succeed())
	fn()
}
