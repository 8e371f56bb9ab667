package controller

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/dialect"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// sweepNow sets the sweep annotation on a target of either kind to a new value and returns
// the status of the sweep that handled it.
func sweepNow[T scimv1.GenericTarget](ctx context.Context, t T) *scimv1.SweepStatus {
	GinkgoHelper()
	value := time.Now().Format(time.RFC3339Nano)
	update(ctx, client.Object(t), func(o client.Object) {
		a := o.GetAnnotations()
		if a == nil {
			a = map[string]string{}
		}
		a[scimv1.SweepRequestedAnnotation] = value
		o.SetAnnotations(a)
	})
	Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(t), t)).To(Succeed())
		g.Expect(t.TargetStatus().Sweep).NotTo(BeNil())
		g.Expect(t.TargetStatus().Sweep.LastHandledRequest).To(Equal(value))
	}).Should(Succeed())
	return t.TargetStatus().Sweep
}

// requestLog records the lists whose filter names a namespace ("list") and the requests that
// address one account ("METHOD id").
type requestLog struct {
	mu   sync.Mutex
	seen []string
}

func (l *requestLog) rule(ns string) scimserver.Rule {
	return func(r *http.Request) *scimserver.Fault {
		l.mu.Lock()
		defer l.mu.Unlock()
		if id, ok := strings.CutPrefix(r.URL.Path, scimserver.BasePath+"/Users/"); ok {
			l.seen = append(l.seen, r.Method+" "+id)
		} else if r.Method == http.MethodGet && strings.Contains(r.URL.Query().Get("filter"), "/"+ns+"/") {
			l.seen = append(l.seen, "list")
		}
		return nil
	}
}

func (l *requestLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.seen
	l.seen = nil
	return out
}

var _ = Describe("Sweeps: one list per target checks every account", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = newNamespace(ctx) })
	AfterEach(func() { scimSrv.Faults.Clear() })

	It("compares every account with its identity from one list, and hands back only the ones that differ", func() {
		t := fastTarget(ctx, ns, "swept")
		names := []string{"a", "b", "c", "d", "e"}
		for _, n := range names {
			si := newIdentity(ns, n, "swept")
			si.Spec.DisplayName = "Display " + n
			Expect(k8s.Create(ctx, si)).To(Succeed())
		}
		for _, n := range names {
			Eventually(get(ctx, &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: n}})).
				Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		}
		log := &requestLog{}
		scimSrv.Faults.Add(log.rule(ns))

		By("an account in step costs nothing but its share of the list")
		s := sweepNow(ctx, t)
		Expect([]any{s.Listing, s.Accounts, s.Checked, s.Flagged, s.Requests}).
			To(Equal([]any{scimv1.SweepFiltered, int32(5), int32(5), int32(0), int32(1)}))
		Expect(log.take()).To(Equal([]string{"list"}), "one list, no account read on its own")
		Expect(t.Status.Orphans).NotTo(BeNil())
		Expect(t.Status.Orphans.Count).To(BeZero())

		By("drift on one account and another deleted on the target: both found by the sweep, corrected by their identities")
		b, c := accountOf(ns, "b"), accountOf(ns, "c")
		scimSrv.Users.Mutate(b["id"].(string), func(a map[string]any) { a["displayName"] = "tampered"; a["active"] = false })
		scimSrv.Users.Remove(c["id"].(string))
		s = sweepNow(ctx, t)
		Expect(s.Accounts).To(BeEquivalentTo(4))
		Expect(s.Checked).To(BeEquivalentTo(3))
		Expect(s.Flagged).To(BeEquivalentTo(2))
		Eventually(func() []any { a := accountOf(ns, "b"); return []any{a["displayName"], a["active"]} }).
			Should(Equal([]any{"Display b", true}))
		Eventually(accountsWithExternalID(ns, "c")).Should(HaveLen(1))
		Eventually(eventReasons(ctx, ns, "c")).Should(ContainElement("DriftCorrected"))
		// The three accounts in step were not read on their own; b's was, to correct it.
		seen := log.take()
		Expect(seen).To(ContainElements("list", "GET "+b["id"].(string), "PATCH "+b["id"].(string)))
		for _, n := range []string{"a", "d", "e"} {
			Expect(seen).NotTo(ContainElement(HaveSuffix(" "+accountOf(ns, n)["id"].(string))), n)
		}
	})

	It("finds a revoked account made active again on the target, and revokes it again", func() {
		t := fastTarget(ctx, ns, "kept", func(t *scimv1.ScimTarget) { t.Spec.DeletionPolicy = scimv1.DeletionPolicyDeactivate })
		si := newIdentity(ns, "lapsed", "kept")
		si.Spec.TTL = scimv1.DurationOf(2 * time.Second)
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si), "10s").Should(HaveCondition(scimv1.ConditionExpired, metav1.ConditionTrue, scimv1.ReasonExpired))
		Expect(si.Status.Targets[0].Revocation).NotTo(BeNil())
		Expect(si.Status.Targets[0].Revocation.Result).To(Equal(scimv1.RevocationInactive))
		id := accountOf(ns, "lapsed")["id"].(string)
		Expect(accountOf(ns, "lapsed")["active"]).To(BeFalse())

		scimSrv.Users.Mutate(id, func(a map[string]any) { a["active"] = true }) // someone on the provider's side
		s := sweepNow(ctx, t)
		Expect(s.Flagged).To(BeEquivalentTo(1))
		Eventually(func() any { return accountOf(ns, "lapsed")["active"] }).Should(Equal(false))
	})

	It("lists every account when the provider refuses the prefix filter, and says so on status", func() {
		scimSrv.Faults.Add(func(r *http.Request) *scimserver.Fault {
			if f := r.URL.Query().Get("filter"); strings.Contains(f, " sw ") && strings.Contains(f, "/"+ns+"/") {
				return &scimserver.Fault{Status: http.StatusBadRequest, ScimType: "invalidFilter", Detail: "sw is not supported"}
			}
			return nil
		})
		t := fastTarget(ctx, ns, "nosw")
		si := newIdentity(ns, "kept", "nosw")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		ghost := scimSrv.Users.Put(map[string]any{"userName": "000-nosw-ghost." + ns, "externalId": externalIDOf(ns, "gone"), "active": true})
		DeferCleanup(func() { scimSrv.Users.Remove(ghost) })

		s := sweepNow(ctx, t)
		Expect(s.Listing).To(Equal(scimv1.SweepUnfiltered))
		Expect(s.Message).To(ContainSubstring("sw is not supported"))
		Expect(s.Accounts).To(BeEquivalentTo(2), "this namespace's two accounts, picked out of the whole list")
		Expect(s.Checked).To(BeEquivalentTo(1))
		Expect(t.Status.Orphans.UserNames).To(ConsistOf("000-nosw-ghost." + ns))
		Expect(t.Status.Adaptations).To(ContainElement(HaveField("Name", dialect.AdaptListWithoutFilter)))
	})

	It("attack: a sweep-requested-at loop makes the operator list the provider in a loop", func() {
		log := &requestLog{}
		scimSrv.Faults.Add(log.rule(ns))
		t := fastTarget(ctx, ns, "hammered")
		sweepNow(ctx, t)
		log.take()
		var last string
		for i := range 10 {
			last = fmt.Sprintf("hammer-%d-%d", i, time.Now().UnixNano())
			update(ctx, t, func(t *scimv1.ScimTarget) { t.Annotations[scimv1.SweepRequestedAnnotation] = last })
		}
		lists := func() int { return countOf(log.take(), "list") }
		seen := 0
		Consistently(func() int { seen += lists(); return seen }, "2s").Should(BeZero(), "a request swept again within the gap")
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, keyOf(ns, "hammered"), t)).To(Succeed())
			g.Expect(t.Status.Sweep.LastHandledRequest).To(Equal(last))
		}, "20s").Should(Succeed(), "the last request is still honoured once the gap has passed")
		Expect(seen+lists()).To(Equal(1), "ten requests within the gap cost one sweep")
	})
})

// countOf counts the occurrences of v in list.
func countOf(list []string, v string) int {
	return len(slices.DeleteFunc(slices.Clone(list), func(s string) bool { return s != v }))
}

var _ = Describe("A sweep of a provider that pages with a cursor (RFC 9865)", func() {
	ctx := context.Background()

	It("pages by cursor where startIndex paging would see the first page again and again", func() {
		p, ok := scimserver.ProfileNamed("cursor-paging")
		Expect(ok).To(BeTrue())
		srv, err := scimserver.New(testToken, scimserver.WithProfile(p))
		Expect(err).NotTo(HaveOccurred())
		Expect(srv.Start("127.0.0.1:0")).To(Succeed())
		DeferCleanup(srv.Stop)
		ns := newNamespace(ctx)
		// 450 accounts of this cluster whose identities are gone: the sweep must see them all.
		for i := range 450 {
			srv.Users.Put(map[string]any{"userName": fmt.Sprintf("gone-%03d.%s", i, ns),
				"externalId": externalIDOf(ns, fmt.Sprintf("gone-%03d", i)), "active": true})
		}
		t := createTarget(ctx, ns, "paged", testToken, func(t *scimv1.ScimTarget) { t.Spec.Endpoint = srv.Endpoint() })
		Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(t.Status.Capabilities).NotTo(BeNil())
		Expect(t.Status.Capabilities.CursorPaging).To(Equal(ptr.To(true)), "advertised in pagination.cursor")
		// The sweep a target gets once Ready is over before the one counted here.
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(t), t)).To(Succeed())
			g.Expect(t.Status.Sweep).NotTo(BeNil())
		}).Should(Succeed())
		srv.ResetCounts()
		sweep := sweepNow(ctx, t)
		Expect(sweep.Message).To(BeEmpty())
		Expect(sweep.Accounts).To(BeEquivalentTo(450))
		Expect(t.Status.Orphans).NotTo(BeNil())
		Expect(t.Status.Orphans.Count).To(BeEquivalentTo(450))
		Expect(srv.RequestCounts()["GET Users?filter"]).To(Equal(3), "three pages of 200, by cursor")
	})
})
