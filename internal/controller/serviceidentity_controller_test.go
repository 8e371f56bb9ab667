package controller

import (
	"context"
	"net/http"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

var _ = Describe("ServiceIdentity", func() {
	ctx := context.Background()
	var ns string

	BeforeEach(func() { ns = readyTargetNamespace(ctx) })
	AfterEach(func() { scimSrv.Faults.Clear() })

	It("provisions the account with the right userName, displayName, externalId and active", func() {
		si := newIdentity(ns, "billing-exporter", "acme")
		si.Spec.DisplayName = "Billing exporter"
		si.Spec.Attributes = &apiextensionsv1.JSON{Raw: []byte(`{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Payments"}}`)}
		Expect(k8s.Create(ctx, si)).To(Succeed())

		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue, scimv1.ReasonProvisioned))
		Expect(si.Finalizers).To(ContainElement(scimv1.DeprovisionFinalizer))
		Expect(si.Status.ObservedGeneration).To(Equal(si.Generation))
		Expect(si.Status.UserName).To(Equal("billing-exporter." + ns))
		Expect(si.Status.Targets).To(HaveLen(1))
		st := si.Status.Targets[0]
		Expect(st.State).To(Equal(scimv1.TargetStateProvisioned))
		Expect(st.LastSyncTime).NotTo(BeNil())

		accounts := accountsWithExternalID(ns, "billing-exporter")()
		Expect(accounts).To(HaveLen(1))
		acct := accounts[0]
		Expect(acct["id"]).To(Equal(st.ID))
		Expect(acct["userName"]).To(Equal("billing-exporter." + ns))
		Expect(acct["displayName"]).To(Equal("Billing exporter"))
		Expect(acct["userType"]).To(Equal("ServiceAccount"))
		Expect(acct["active"]).To(BeTrue())
		Expect(acct).To(HaveKeyWithValue("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
			HaveKeyWithValue("department", "Payments")))
	})

	It("propagates updates of displayName and attributes", func() {
		si := newIdentity(ns, "updater", "acme")
		si.Spec.DisplayName = "Before"
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))

		update(ctx, si, func(si *scimv1.ServiceIdentity) {
			si.Spec.DisplayName = "After"
			si.Spec.Attributes = &apiextensionsv1.JSON{Raw: []byte(`{"title":"robot","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"department":"Risk"}}`)}
		})
		Eventually(func(g Gomega) {
			accts := accountsWithExternalID(ns, "updater")()
			g.Expect(accts).To(HaveLen(1))
			g.Expect(accts[0]["displayName"]).To(Equal("After"))
			g.Expect(accts[0]["title"]).To(Equal("robot"))
			g.Expect(accts[0]).To(HaveKeyWithValue("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
				HaveKeyWithValue("department", "Risk")))
		}).Should(Succeed())
		Eventually(get(ctx, si)).Should(WithTransform(func(s *scimv1.ServiceIdentity) int64 {
			return s.Status.ObservedGeneration
		}, Equal(si.Generation)))
		Eventually(eventReasons(ctx, ns, "updater")).Should(ContainElement("Updated"))
	})

	It("deletes the account before releasing the finalizer", func() {
		si := newIdentity(ns, "short-lived", "acme")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(accountsWithExternalID(ns, "short-lived")()).To(HaveLen(1))

		Expect(k8s.Delete(ctx, si)).To(Succeed())
		Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, keyOf(ns, "short-lived"), si)) }).Should(BeTrue())
		Expect(accountsWithExternalID(ns, "short-lived")()).To(BeEmpty())
		Eventually(eventReasons(ctx, ns, "short-lived")).Should(ContainElement("Deprovisioned"))
	})

	It("keeps the finalizer and says why while the SCIM server is down, then removes the account", func() {
		si := newIdentity(ns, "outage", "acme")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))

		scimSrv.Stop()
		restarted := false
		DeferCleanup(func() {
			if !restarted {
				Expect(scimSrv.Start(scimAddr)).To(Succeed())
			}
		})
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonDeprovisionBlocked))
		Expect(condition(si, scimv1.ConditionReady).Message).To(And(
			ContainSubstring("connection refused"), ContainSubstring(scimv1.ForceOrphanAnnotation)))
		Expect(si.Finalizers).To(ContainElement(scimv1.DeprovisionFinalizer))
		Consistently(get(ctx, si), "1s").Should(WithTransform(func(s *scimv1.ServiceIdentity) []string { return s.Finalizers },
			ContainElement(scimv1.DeprovisionFinalizer)))
		Expect(accountsWithExternalID(ns, "outage")()).To(HaveLen(1))

		Expect(scimSrv.Start(scimAddr)).To(Succeed())
		restarted = true
		// Backoff after a few failures is a few seconds; the account must go within that.
		Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, keyOf(ns, "outage"), si)) }, "30s").Should(BeTrue())
		Expect(accountsWithExternalID(ns, "outage")()).To(BeEmpty())
	})

	It("never creates a duplicate when the POST succeeded but its response was lost", func() {
		scimSrv.Faults.Add(scimserver.Once(scimserver.On(http.MethodPost, "/Users", scimserver.Fault{ResetAfterServing: true})))
		si := newIdentity(ns, "lost-response", "acme")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(accountsWithExternalID(ns, "lost-response")()).To(HaveLen(1))
		Expect(si.Status.Targets[0].ID).To(Equal(accountsWithExternalID(ns, "lost-response")()[0]["id"]))
	})

	It("adopts the account after a manager restart between create and status write", Serial, func() {
		// The first manager created the account on the target and died before writing status.
		si := newIdentity(ns, "restart", "acme")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(accountsWithExternalID(ns, "restart")).Should(HaveLen(1))
		stopMgr()
		Eventually(mgrDone, "30s").Should(BeClosed())
		Expect(k8s.Get(ctx, keyOf(ns, "restart"), si)).To(Succeed())
		si.Status = scimv1.ServiceIdentityStatus{} // the status write that never happened
		Expect(k8s.Status().Update(ctx, si)).To(Succeed())

		startManager()
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(accountsWithExternalID(ns, "restart")()).To(HaveLen(1))
		Expect(si.Status.Targets[0].ID).To(Equal(accountsWithExternalID(ns, "restart")()[0]["id"]))
	})

	It("adopts a hand-made account with the same userName and no externalId where the target opts in", func() {
		id := scimSrv.Users.Put(map[string]any{"userName": "handmade." + ns, "displayName": "made by hand"})
		createTarget(ctx, ns, "adopting", testToken, func(t *scimv1.ScimTarget) { t.Spec.Adoption = scimv1.AdoptionIfNoExternalID })
		si := newIdentity(ns, "handmade", "adopting")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(si.Status.Targets[0].ID).To(Equal(id))
		accts := accountsWithExternalID(ns, "handmade")()
		Expect(accts).To(HaveLen(1))
		Expect(accts[0]["id"]).To(Equal(id))
		Eventually(eventReasons(ctx, ns, "handmade")).Should(ContainElement("Adopted"))
	})

	It("stalls with the target's detail when the userName belongs to another owner", func() {
		scimSrv.Users.Put(map[string]any{"userName": "taken." + ns, "externalId": "someone-else/x/y"})
		si := newIdentity(ns, "taken", "acme")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionStalled, metav1.ConditionTrue, scimv1.ReasonAccountConflict))
		Expect(si).To(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse))
		// The target's own detail, and the conflict named, but not the other owner's externalId
		// (another tenant's namespace and name).
		Expect(condition(si, scimv1.ConditionStalled).Message).To(And(
			ContainSubstring("already in use"), ContainSubstring("another externalId"), Not(ContainSubstring("someone-else/x/y"))))
		Expect(si.Status.ObservedGeneration).To(Equal(si.Generation))
		Eventually(eventReasons(ctx, ns, "taken")).Should(ContainElement(scimv1.ReasonAccountConflict))
		// No hot loop: a stalled identity makes no further requests on its own.
		before := scimSrv.Requests(http.MethodPost, "Users")
		Consistently(func() int { return scimSrv.Requests(http.MethodPost, "Users") }, "2s").Should(Equal(before))
	})

	It("recreates an account deleted on the target at the next sync", func() {
		si := newIdentity(ns, "recreated", "acme")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		scimSrv.Users.Remove(si.Status.Targets[0].ID)
		// A spec change triggers a sync; drift without one is the resync interval's job.
		update(ctx, si, func(si *scimv1.ServiceIdentity) {
			si.Spec.DisplayName = "again"
		})
		Eventually(accountsWithExternalID(ns, "recreated")).Should(HaveLen(1))
		Eventually(get(ctx, si)).Should(WithTransform(func(s *scimv1.ServiceIdentity) string {
			return s.Status.Targets[0].ID
		}, Equal(accountsWithExternalID(ns, "recreated")()[0]["id"])))
	})

	It("waits for a missing target and provisions once it appears", func() {
		si := newIdentity(ns, "early", "later")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonTargetNotFound))
		Expect(si).To(HaveCondition(scimv1.ConditionReconciling, metav1.ConditionTrue))
		createTarget(ctx, ns, "later", testToken)
		Eventually(get(ctx, si), "10s").Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
	})

	It("rejects a change of userName", func() {
		si := newIdentity(ns, "fixed", "acme")
		si.Spec.UserName = "fixed-name"
		Expect(k8s.Create(ctx, si)).To(Succeed())
		patch := client.MergeFrom(si.DeepCopy()) // no resourceVersion: only validation can refuse it
		si.Spec.UserName = "other-name"
		err := k8s.Patch(ctx, si, patch)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring("userName is immutable"))
	})

	It("makes two requests per new identity and exactly one GET and no write per steady-state resync", func() {
		// A server of its own: the suite's server also serves the resyncs of other specs' identities.
		own, err := scimserver.New(testToken)
		Expect(err).NotTo(HaveOccurred())
		Expect(own.Start("127.0.0.1:0")).To(Succeed())
		DeferCleanup(own.Stop)
		// Observed by the operator (Ready) before the identity exists, and the sweep a target
		// gets once Ready (a list, GET Users?filter too) over before the requests are counted.
		t := fastTarget(ctx, ns, "fast", func(t *scimv1.ScimTarget) { t.Spec.Endpoint = own.Endpoint() })
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(t), t)).To(Succeed())
			g.Expect(t.Status.Sweep).NotTo(BeNil())
		}).Should(Succeed())
		userRequests := func() map[string]int {
			out := map[string]int{}
			for k, v := range own.RequestCounts() {
				if strings.Contains(k, " Users") && k != "GET Users" { // "GET Users" is the target's credential probe
					out[k] = v
				}
			}
			return out
		}
		delta := func(before, after map[string]int) map[string]int {
			out := map[string]int{}
			for k, v := range after {
				if d := v - before[k]; d != 0 {
					out[k] = d
				}
			}
			return out
		}

		before := userRequests()
		si := newIdentity(ns, "efficient", "fast")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		provisioned := userRequests()
		Expect(delta(before, provisioned)).To(Equal(map[string]int{"GET Users?filter": 1, "POST Users": 1}))

		// A resync (requested now rather than waiting for the 30s interval; the same path).
		requestResync(ctx, si)
		resourceVersion := si.ResourceVersion
		Eventually(func() int { return delta(provisioned, userRequests())["GET Users/{id}"] }, "10s", "5ms").Should(Equal(1))
		Expect(delta(provisioned, userRequests())).To(Equal(map[string]int{"GET Users/{id}": 1}))
		// An unchanged account is not worth a Kubernetes write (no status churn).
		Consistently(func(g Gomega) string {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
			return si.ResourceVersion
		}, "500ms").Should(Equal(resourceVersion))
	})
})
