package controller

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

// quirkyServer starts a reference SCIM server with these quirks for one spec.
func quirkyServer(q scimserver.Quirks) *scimserver.Server {
	GinkgoHelper()
	s, err := scimserver.New(testToken, scimserver.WithProfile(scimserver.Profile{Name: "spec", Quirks: q}))
	Expect(err).NotTo(HaveOccurred())
	Expect(s.Start("127.0.0.1:0")).To(Succeed())
	DeferCleanup(s.Stop)
	return s
}

// userOn returns the account with this id on srv, nil when there is none.
func userOn(srv *scimserver.Server, id string) map[string]any {
	for _, u := range srv.Users.All() {
		if u["id"] == id {
			return u
		}
	}
	return nil
}

var _ = Describe("Orphan clean-up", func() {
	ctx := context.Background()

	// The account's id now holds a person's account: someone else's externalId, a person's
	// userName, active.
	reassign := func(a map[string]any) {
		a["externalId"] = "hr-system/jane.doe"
		a["userName"] = "jane.doe"
		a["active"] = true
	}
	// addressed: a request to this account alone (GET, PATCH, PUT or DELETE by id).
	addressed := func(r *http.Request, id string, methods ...string) bool {
		if !strings.HasSuffix(r.URL.Path, "/Users/"+id) {
			return false
		}
		for _, m := range methods {
			if r.Method == m {
				return true
			}
		}
		return len(methods) == 0
	}

	// reassignAt is a rule that reassigns the account once, when the first request to it with
	// one of these methods (any, when none) arrives, or (served) once that request was served.
	type reassignAt struct {
		served  bool
		methods []string
	}

	DescribeTable("attack: an orphan reassigned between the sweep's list and the clean-up is not deleted",
		func(q scimserver.Quirks, at reassignAt, stillActive bool) {
			srv := quirkyServer(q)
			ns := newNamespace(ctx)
			id := srv.Users.Put(map[string]any{"userName": "ghost." + ns, "externalId": externalIDOf(ns, "ghost"), "active": true})
			fired := &atomic.Bool{}
			srv.Faults.Add(scimserver.Once(func(r *http.Request) *scimserver.Fault {
				if !addressed(r, id, at.methods...) {
					return nil
				}
				now := func() { fired.Store(true); srv.Users.Mutate(id, reassign) }
				if at.served {
					return &scimserver.Fault{Served: now}
				}
				return &scimserver.Fault{Arrived: now}
			}))

			t := createTarget(ctx, ns, "cleaner", testToken, func(t *scimv1.ScimTarget) {
				t.Spec.Endpoint = srv.Endpoint()
				t.Spec.Orphans = &scimv1.Orphans{Policy: scimv1.OrphanPolicyDelete, Interval: scimv1.DurationOf(time.Hour)}
			})
			// The clean-up runs before the sweep's report is written.
			Eventually(func(g Gomega) {
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(t), t)).To(Succeed())
				g.Expect(t.Status.Orphans).NotTo(BeNil())
				g.Expect(t.Status.Orphans.Count).To(Equal(int32(1)))
			}).Should(Succeed())
			Expect(fired.Load()).To(BeTrue(), "the account was reassigned while the clean-up was on it")

			jane := userOn(srv, id)
			Expect(jane).NotTo(BeNil(), "jane.doe's account, which took the orphan's id, was deleted")
			Expect(jane["externalId"]).To(Equal("hr-system/jane.doe"))
			Expect(jane["active"]).To(Equal(stillActive))
			Eventually(eventReasons(ctx, ns, "cleaner")).Should(ContainElement("OrphanSkipped"))
		},
		Entry("reassigned as the clean-up first addresses it", scimserver.Quirks{}, reassignAt{}, true),
		Entry("reassigned as its deactivation arrives (the If-Match holds it back)", scimserver.Quirks{},
			reassignAt{methods: []string{http.MethodPatch, http.MethodPut}}, true),
		Entry("reassigned after its deactivation, before the DELETE", scimserver.Quirks{},
			reassignAt{served: true, methods: []string{http.MethodPatch, http.MethodPut}}, true),
		// Without ETags nothing can hold the PATCH back: the person's account is deactivated
		// (reversible), never deleted.
		Entry("without ETags and with 204 to PATCH, reassigned as its deactivation arrives", scimserver.Quirks{NoETags: true, PatchNoContent: true},
			reassignAt{methods: []string{http.MethodPatch, http.MethodPut}}, false),
	)

	It("leaves an orphan alone when an identity claims it between the sweep's list and the clean-up", func() {
		srv := ownServer(testToken)
		ns := newNamespace(ctx)
		id := srv.Users.Put(map[string]any{"userName": "ghost." + ns, "externalId": externalIDOf(ns, "ghost"), "active": true})
		claimed := &atomic.Bool{}
		srv.Faults.Add(scimserver.Once(func(r *http.Request) *scimserver.Fault {
			if !addressed(r, id) {
				return nil
			}
			return &scimserver.Fault{Arrived: func() {
				defer GinkgoRecover()
				// Declared again (its target not made yet): the account is its own again.
				Expect(k8s.Create(ctx, newIdentity(ns, "ghost", "later"))).To(Succeed())
				claimed.Store(true)
			}}
		}))
		t := createTarget(ctx, ns, "cleaner", testToken, func(t *scimv1.ScimTarget) {
			t.Spec.Endpoint = srv.Endpoint()
			t.Spec.Orphans = &scimv1.Orphans{Policy: scimv1.OrphanPolicyDelete, Interval: scimv1.DurationOf(time.Hour)}
		})
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(t), t)).To(Succeed())
			g.Expect(t.Status.Orphans).NotTo(BeNil())
		}).Should(Succeed())
		Expect(claimed.Load()).To(BeTrue())
		Expect(userOn(srv, id)).To(HaveKeyWithValue("active", true), "the identity's account was deprovisioned as an orphan")
		Eventually(eventNotes(ctx, ns, "cleaner")).Should(ContainElement(ContainSubstring("is claimed by ServiceIdentity " + ns + "/ghost")))
	})

	It("attack: force-orphan on a shared ClusterScimTarget leaves an active account", func() {
		ns := newNamespace(ctx)
		own := ownServer(testToken)
		cst := clusterTarget(ctx, "shared-orphans", []string{ns}, func(t *scimv1.ClusterScimTarget) { t.Spec.Endpoint = own.Endpoint() })
		si := clusterIdentity(ns, "leaver", cst.Name)
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		accounts := func() []map[string]any { return own.UsersWhere("externalId", externalIDOf(ns, "leaver")) }
		Expect(accounts()).To(ConsistOf(HaveKeyWithValue("active", true)))

		By("the tenant releases the finalizer by hand and deletes the identity: no revocation")
		update(ctx, si, func(si *scimv1.ServiceIdentity) {
			if si.Annotations == nil {
				si.Annotations = map[string]string{}
			}
			si.Annotations[scimv1.ForceOrphanAnnotation] = "true"
		})
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		Eventually(gone(ctx, si)).Should(BeTrue())
		Expect(accounts()).To(ConsistOf(HaveKeyWithValue("active", true)))

		// An orphan of a namespace the target does not serve (a tenant's own ScimTarget on the
		// same provider left it): the default acts only for the namespaces the target allows.
		elsewhere := newNamespace(ctx)
		other := own.Users.Put(map[string]any{"userName": "kept." + elsewhere, "externalId": externalIDOf(elsewhere, "kept"), "active": true})

		By("the next sweep of the cluster target deactivates it (its default orphan policy)")
		sweepNow(ctx, cst)
		Expect(cst.Status.Orphans).NotTo(BeNil())
		Expect(cst.Status.Orphans.Count).To(Equal(int32(2)))
		Expect(accounts()).To(ConsistOf(HaveKeyWithValue("active", false)), "read on the SCIM server")
		Expect(userOn(own, other)).To(HaveKeyWithValue("active", true), "outside the target's namespaces: reported only")
	})
})
