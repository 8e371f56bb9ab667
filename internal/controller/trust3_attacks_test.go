package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/scim"
	"github.com/nhi-dev/scim-operator/internal/targets"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// Trust, round 3 (issue 20): the kill switch and governance always win, and nothing calls an
// account inactive that the target did not show inactive. Each spec plays one attack of the
// review; each failed on the code before the change.

// revokedOrInactive: every account carrying the identity's externalId is gone or inactive.
func revokedOrInactive(ns, name string) func() bool {
	return func() bool {
		for _, a := range accountsWithExternalID(ns, name)() {
			if a["active"] != false {
				return false
			}
		}
		return true
	}
}

var _ = Describe("The kill switch never lies", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace(ctx) })
	AfterEach(func() { scimSrv.Faults.Clear() })

	orphan := func(si *scimv1.ServiceIdentity) { si.Spec.DeletionPolicy = ptr.To(scimv1.DeletionPolicyOrphan) }
	expireNow := func(si *scimv1.ServiceIdentity) { si.Spec.TTL = scimv1.DurationOf(time.Second) }

	It("attack: Orphan and a short ttl on a shared ClusterScimTarget keep the account active after expiry", func() {
		cst := clusterTarget(ctx, "shared", []string{ns})
		si := clusterIdentity(ns, "stayer", cst.Name)
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(accountOf(ns, "stayer")["active"]).To(BeTrue())

		By("the tenant asks for Orphan and lets the identity expire")
		update(ctx, si, func(si *scimv1.ServiceIdentity) { orphan(si); expireNow(si) })
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionExpired, metav1.ConditionTrue, scimv1.ReasonExpired))
		Eventually(revokedOrInactive(ns, "stayer")).Should(BeTrue(),
			"the tenant's Orphan kept an account of the shared application active past its expiry")
		Expect(accountsWithExternalID(ns, "stayer")()).To(BeEmpty(), "the target's deletionPolicy (Delete) applies")
	})

	It("attack: a tenant's Orphan on a shared ClusterScimTarget keeps the account active after the identity is deleted", func() {
		cst := clusterTarget(ctx, "shared", []string{ns})
		si := clusterIdentity(ns, "leaver", cst.Name)
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))

		update(ctx, si, orphan)
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonGuardrail))
		Expect(condition(si, scimv1.ConditionReady).Message).To(ContainSubstring(`deletionPolicy "Orphan"`))
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		Eventually(gone(ctx, si)).Should(BeTrue())
		Expect(accountsWithExternalID(ns, "leaver")()).To(BeEmpty(),
			"the tenant's Orphan left an account of the shared application behind")
	})

	It("attack: spec.suspend on an expired identity whose Orphan left the account active does nothing", func() {
		fastTarget(ctx, ns, "own")
		si := newIdentity(ns, "expired-bot", "own")
		orphan(si)
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		update(ctx, si, expireNow)
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionExpired, metav1.ConditionTrue, scimv1.ReasonExpired))
		Expect(accountOf(ns, "expired-bot")["active"]).To(BeTrue(), "Orphan on the tenant's own target leaves the account (allowed)")

		By("the incident responder pulls the kill switch")
		update(ctx, si, func(si *scimv1.ServiceIdentity) { si.Spec.Suspend = true })
		Eventually(func() any { return accountOf(ns, "expired-bot")["active"] }).Should(Equal(false),
			"the kill switch did nothing on an expired identity")
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, keyOf(ns, "expired-bot"), si)).To(Succeed())
			g.Expect(si.Status.Targets).To(HaveLen(1))
			off, why := si.Status.Targets[0].AccountOff()
			g.Expect(off).To(BeTrue(), why)
		}).Should(Succeed())
	})

	It("attack: an invalid spec keeps a suspended identity's account active", func() {
		fastTarget(ctx, ns, "own")
		si := newIdentity(ns, "blocked-bot", "own")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))

		By("the tenant points workloadRef at nothing (the spec cannot be provisioned) as the responder suspends")
		update(ctx, si, func(si *scimv1.ServiceIdentity) {
			si.Spec.WorkloadRef = &scimv1.WorkloadReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "no-such-deployment"}
			si.Spec.Suspend = true
		})
		Eventually(func() any { return accountOf(ns, "blocked-bot")["active"] }).Should(Equal(false),
			"an invalid spec kept the suspended identity's account active")
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse))
		Expect(condition(si, scimv1.ConditionReady).Message).To(ContainSubstring("spec.suspend is set"))
	})

	It("attack: a group the guardrails refuse keeps a suspended identity's account active", func() {
		fastTarget(ctx, ns, "own", func(t *scimv1.ScimTarget) {
			t.Spec.Guardrails = &scimv1.Guardrails{Groups: &scimv1.AllowList{Allowed: []string{"app-*"}}}
		})
		si := newIdentity(ns, "railed-bot", "own")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))

		update(ctx, si, func(si *scimv1.ServiceIdentity) {
			si.Spec.Groups = []string{"not-allowed"}
			si.Spec.Suspend = true
		})
		Eventually(func() any { return accountOf(ns, "railed-bot")["active"] }).Should(Equal(false),
			"a guardrail refusal kept the suspended identity's account active")
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonGuardrail))
	})

	It("attack: an identity's own short ttl with Orphan escapes the target's maxTTL", func() {
		governed(ctx, ns, "bounded", &scimv1.Governance{MaxTTL: scimv1.DurationOf(time.Hour)})
		si := newIdentity(ns, "short-immortal", "bounded")
		orphan(si)
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))

		update(ctx, si, expireNow)
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionExpired, metav1.ConditionTrue, scimv1.ReasonExpired))
		Expect(si.Status.ExpiryCappedBy).To(BeEmpty(), "the identity's own ttl ended it, not maxTTL")
		Eventually(revokedOrInactive(ns, "short-immortal")).Should(BeTrue(),
			"Orphan kept the account active on a target whose governance bounds every lifetime")
	})

	It("attack: the Deprovisioned Event calls an account Orphan left active revoked", func() {
		fastTarget(ctx, ns, "own")
		si := newIdentity(ns, "orphaned-bot", "own")
		orphan(si)
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, keyOf(ns, "orphaned-bot"), si)) }).Should(BeTrue())
		Expect(accountOf(ns, "orphaned-bot")["active"]).To(BeTrue())

		Eventually(eventReasons(ctx, ns, "orphaned-bot")).Should(ContainElement(scimv1.ReasonAccountsLeftActive),
			"the revocation's Event does not say the account is still active")
		Expect(eventReasons(ctx, ns, "orphaned-bot")(Default)).NotTo(ContainElement("Deprovisioned"))
		Expect(eventNotes(ctx, ns, "orphaned-bot")(Default)).To(ContainElement(ContainSubstring("STILL ACTIVE")))
	})

	It("attack: one tenant's deletions on a shared ClusterScimTarget keep another tenant's account active", func() {
		noisy, victim := ns, newNamespace(ctx)
		cst := clusterTarget(ctx, "breaker-shared", []string{noisy, victim}, func(t *scimv1.ClusterScimTarget) {
			t.Spec.CircuitBreaker = &scimv1.CircuitBreaker{MaxDeletionsPerInterval: 2, Interval: scimv1.DurationOf(time.Hour)}
		})
		var spam []*scimv1.ServiceIdentity
		for _, name := range []string{"spam-a", "spam-b", "spam-c"} {
			si := clusterIdentity(noisy, name, cst.Name)
			Expect(k8s.Create(ctx, si)).To(Succeed())
			spam = append(spam, si)
		}
		target := clusterIdentity(victim, "victim-bot", cst.Name)
		Expect(k8s.Create(ctx, target)).To(Succeed())
		for _, si := range append(spam, target) {
			Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		}

		By("the noisy tenant deletes three identities: its share of the breaker is used up")
		for _, si := range spam {
			Expect(k8s.Delete(ctx, si)).To(Succeed())
		}
		Eventually(get(ctx, cst)).Should(HaveCondition(scimv1.ConditionStalled, metav1.ConditionTrue, scimv1.ReasonBreakerOpen))
		Expect(condition(cst, scimv1.ConditionStalled).Message).To(ContainSubstring(`"` + noisy + `"`))
		Eventually(func() []any {
			var active []any
			for _, si := range spam {
				for _, a := range accountsWithExternalID(noisy, si.Name)() {
					active = append(active, a["active"])
				}
			}
			return active
		}).Should(ConsistOf(false), "the breaker held back a revocation's deactivation: one account left, inactive")

		By("the victim tenant's workload is retired: its revocation does not wait for the noisy tenant's budget")
		Expect(k8s.Delete(ctx, target)).To(Succeed())
		Eventually(gone(ctx, target), "5s").Should(BeTrue(), "another tenant's deletions paused this tenant's revocation")
		Expect(accountsWithExternalID(victim, "victim-bot")()).To(BeEmpty())
		Expect(k8s.Get(ctx, keyOf("", cst.Name), cst)).To(Succeed())
		Expect(cst.Status.CircuitBreaker.Namespaces).To(ContainElement(scimv1.BreakerNamespace{Namespace: victim, Charged: 1}))
	})
})

var _ = Describe("No tenant spends another's workers", func() {
	ctx := context.Background()

	It("attack: a tenant's many hanging targets delay another tenant's revocations", func() {
		var hanging atomic.Bool
		var hung atomic.Int32
		release := make(chan struct{})
		trap, _ := hostileProvider(func(w http.ResponseWriter, r *http.Request) bool {
			if !hanging.Load() {
				return false
			}
			hung.Add(1)
			select { // accepts the request, never answers
			case <-release:
			case <-r.Context().Done():
			}
			return true
		})
		DeferCleanup(func() { hanging.Store(false); close(release) })

		attacker, victim := newNamespace(ctx), readyTargetNamespace(ctx)
		const traps, perTrap, victims = 6, 2, 20
		var bait, ids []*scimv1.ServiceIdentity
		for i := range traps {
			name := fmt.Sprintf("trap-%d", i)
			t := createTarget(ctx, attacker, name, testToken, func(t *scimv1.ScimTarget) { t.Spec.Endpoint = trap.URL + scimserver.BasePath })
			Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
			for j := range perTrap {
				si := newIdentity(attacker, fmt.Sprintf("bait-%d-%d", i, j), name)
				Expect(k8s.Create(ctx, si)).To(Succeed())
				bait = append(bait, si)
			}
		}
		for i := range victims {
			si := newIdentity(victim, fmt.Sprintf("victim-%d", i), "acme")
			Expect(k8s.Create(ctx, si)).To(Succeed())
			ids = append(ids, si)
		}
		for _, si := range append(append([]*scimv1.ServiceIdentity{}, bait...), ids...) {
			Eventually(get(ctx, si), "60s").Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		}

		By("the attacker's targets stop answering while its identities are retired")
		hanging.Store(true)
		for _, si := range bait {
			Expect(k8s.Delete(ctx, si)).To(Succeed())
		}
		Eventually(hung.Load).Should(BeNumerically(">=", 3))
		began := time.Now()
		for _, si := range ids {
			Expect(k8s.Delete(ctx, si)).To(Succeed())
		}
		// Every hung call lasts the SCIM timeout (2s here): with the workers held by the
		// attacker's six targets, the victim's revocations wait several of them.
		Eventually(func(g Gomega) {
			for _, si := range ids {
				g.Expect(accountsWithExternalID(victim, si.Name)()).To(BeEmpty(), "account of %s", si.Name)
			}
		}, "4s", "50ms").Should(Succeed(), "another tenant's hanging targets held the revocations back")
		GinkgoWriter.Printf("%d accounts revoked in %s while another tenant's %d targets hang\n", victims, time.Since(began), traps)
	})

	It("attack: a tenant's many hanging targets keep another tenant's new target from becoming Ready", func() {
		var hanging atomic.Bool
		release := make(chan struct{})
		trap, _ := hostileProvider(func(w http.ResponseWriter, r *http.Request) bool {
			if !hanging.Load() {
				return false
			}
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return true
		})
		DeferCleanup(func() { hanging.Store(false); close(release) })
		attacker, victim := newNamespace(ctx), newNamespace(ctx)
		var traps []*scimv1.ScimTarget
		for i := range 8 {
			t := createTarget(ctx, attacker, fmt.Sprintf("trap-%d", i), testToken, func(t *scimv1.ScimTarget) { t.Spec.Endpoint = trap.URL + scimserver.BasePath })
			Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
			traps = append(traps, t)
		}
		By("the attacker's targets hang, and each is asked to probe and sweep again")
		hanging.Store(true)
		for _, t := range traps {
			update(ctx, t, func(t *scimv1.ScimTarget) {
				t.Annotations = map[string]string{scimv1.SweepRequestedAnnotation: "now"}
				t.Spec.ResyncInterval = scimv1.DurationOf(31 * time.Second) // a new generation: probed again
			})
		}
		t := createTarget(ctx, victim, "mine", testToken)
		Eventually(get(ctx, t), "3s").Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue),
			"another tenant's hanging targets held every target worker")
	})

	It("attack: providers that list slowly, page after page, keep another tenant's new target from becoming Ready", func() {
		// Each page of a sweep's listing comes just inside the request timeout, and there is
		// always another: a sweep lasts its whole budget (half the resync interval here).
		slow, slowPages := slowLister(1500*time.Millisecond, 1_000_000)
		// Two namespaces, two targets each: as many sweeps in flight as a tenant's request slots
		// allow, and as many as there are target workers.
		for range 2 {
			attacker := newNamespace(ctx)
			for i := range 2 {
				t := createTarget(ctx, attacker, fmt.Sprintf("slow-%d", i), testToken, func(t *scimv1.ScimTarget) {
					t.Spec.Endpoint = slow.URL + scimserver.BasePath
					t.Spec.ResyncInterval = scimv1.DurationOf(time.Minute) // sweep budget: 30s
				})
				Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
			}
		}
		Eventually(slowPages.Load).Should(BeNumerically(">=", 8), "the sweeps are paging slowly")

		t := createTarget(ctx, newNamespace(ctx), "mine", testToken)
		Eventually(get(ctx, t), "5s").Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue),
			"slow sweeps held every target worker")
	})

	It("attack: a target deleted while it is swept leaves its sweep to a new target of the same name, and its metrics", func() {
		slow, pages := slowLister(time.Second, 3) // three pages of a second each
		ns := newNamespace(ctx)
		old := createTarget(ctx, ns, "swept", testToken, func(t *scimv1.ScimTarget) {
			t.Spec.Endpoint = slow.URL + scimserver.BasePath
			t.Spec.ResyncInterval = scimv1.DurationOf(time.Minute)
		})
		Eventually(get(ctx, old)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Eventually(pages.Load).Should(BeNumerically(">=", 1), "the sweep has begun")
		Expect(k8s.Delete(ctx, old)).To(Succeed())
		Eventually(gone(ctx, old)).Should(BeTrue())

		By("the deleted target's sweep keeps no series of it (its own would have ended within 3s)")
		key := targets.Key(scimv1.KindScimTarget, ns, "swept")
		Consistently(func() int { return seriesCount("scim_operator_orphans", map[string]string{"target": key}) }, "4s").
			Should(BeZero(), "a series of the deleted target came back")

		By("a new target of the same name, on another provider, is swept afresh")
		fresh := &scimv1.ScimTarget{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "swept"}, Spec: old.Spec}
		fresh.Spec.Endpoint = endpoint()
		Expect(k8s.Create(ctx, fresh)).To(Succeed())
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(fresh), fresh)).To(Succeed())
			g.Expect(fresh.Status.Sweep).NotTo(BeNil())
			g.Expect(fresh.Status.Sweep.LastSweepTime.Time).NotTo(BeTemporally("<", fresh.CreationTimestamp.Time),
				"the new target shows the deleted one's sweep (and its identities trust it)")
		}).Should(Succeed())
	})
})

// slowLister is a provider whose sweep listings (filter externalId sw) answer each page after
// delay, one account of this cluster per page, total in all; every other request (probes,
// lookups) is answered at once by a reference server. pages counts the pages asked for.
func slowLister(delay time.Duration, total int) (*httptest.Server, *atomic.Int32) {
	GinkgoHelper()
	pages := &atomic.Int32{}
	sweepFilter := regexp.MustCompile(`^externalId sw "(.*)"$`)
	srv, _ := hostileProvider(func(w http.ResponseWriter, r *http.Request) bool {
		m := sweepFilter.FindStringSubmatch(r.URL.Query().Get("filter"))
		if r.Method != http.MethodGet || m == nil {
			return false
		}
		pages.Add(1)
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return true
		}
		start, _ := strconv.Atoi(r.URL.Query().Get("startIndex"))
		start = max(start, 1)
		w.Header().Set("Content-Type", "application/scim+json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"schemas": []string{scim.SchemaListResponse}, "totalResults": total, "startIndex": start, "itemsPerPage": 1,
			"Resources": []map[string]any{{"schemas": []string{scim.SchemaUser}, "id": fmt.Sprint("ghost-", start),
				"userName": fmt.Sprint("ghost-", start), "externalId": fmt.Sprint(m[1], "ghost-", start), "active": true}},
		})
		return true
	})
	return srv, pages
}
