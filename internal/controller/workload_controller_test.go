package controller

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/controller/identity"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

func deployment(ns, name string, annotations map[string]string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations, Labels: map[string]string{"team": "x"}},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.com/agent:1"}}},
			},
		},
	}
}

// eventReasons returns the reasons of the Events about an object (for Eventually, or called
// with Default).
func eventReasons(ctx context.Context, ns, regarding string) func(Gomega) []string {
	return eventsAbout(ctx, ns, regarding, func(e eventsv1.Event) string { return e.Reason })
}

// eventsAbout returns what field picks from each Event about an object.
func eventsAbout(ctx context.Context, ns, regarding string, field func(eventsv1.Event) string) func(Gomega) []string {
	return func(g Gomega) []string {
		list := &eventsv1.EventList{}
		g.Expect(k8s.List(ctx, list, client.InNamespace(ns))).To(Succeed())
		var out []string
		for _, e := range list.Items {
			if e.Regarding.Name == regarding {
				out = append(out, field(e))
			}
		}
		return out
	}
}

var _ = Describe("Workload annotations", func() {
	ctx := context.Background()
	var ns string
	BeforeEach(func() { ns = readyTargetNamespace(ctx) })

	It("creates an owned identity for an annotated ServiceAccount and provisions it", func() {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "ledger-sync",
			Labels: map[string]string{"team": "payments"},
			Annotations: map[string]string{
				scimv1.AnnotationTargets: "acme", scimv1.AnnotationGroups: "payments-writers-" + ns, scimv1.AnnotationOwner: "payments-team@example.com",
			}}}
		Expect(k8s.Create(ctx, sa)).To(Succeed())
		si := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "serviceaccount-ledger-sync"}}
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(metav1.IsControlledBy(si, sa)).To(BeTrue())
		Expect(si.Labels).NotTo(HaveKey("team"))
		Expect(si.Spec.TargetRefs).To(Equal([]scimv1.TargetReference{{Kind: scimv1.KindScimTarget, Name: "acme"}}))
		Expect(si.Spec.Groups).To(Equal([]string{"payments-writers-" + ns}))
		Expect(si.Spec.Owner).To(Equal("payments-team@example.com"))
		Expect(accountsWithExternalID(ns, "serviceaccount-ledger-sync")()).To(HaveLen(1))
	})

	It("follows annotation edits and deletes the identity when the annotation goes", func() {
		d := deployment(ns, "fraud-agent", map[string]string{
			scimv1.AnnotationTargets: "acme", scimv1.AnnotationDisplayName: "Fraud triage agent", scimv1.AnnotationTTL: "24h"})
		Expect(k8s.Create(ctx, d)).To(Succeed())
		si := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deployment-fraud-agent"}}
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(*si.Spec.TTL).To(Equal(scimv1.Duration("24h")))
		Expect(si.Spec.DisplayName).To(Equal("Fraud triage agent"))
		Expect(si.Status.ExpiresAt).NotTo(BeNil())

		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(d), d)).To(Succeed())
			d.Annotations[scimv1.AnnotationDisplayName] = "Fraud agent v2"
			g.Expect(k8s.Update(ctx, d)).To(Succeed())
		}).Should(Succeed())
		Eventually(func() any { return accountOf(ns, "deployment-fraud-agent")["displayName"] }).Should(Equal("Fraud agent v2"))

		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(d), d)).To(Succeed())
			delete(d.Annotations, scimv1.AnnotationTargets)
			g.Expect(k8s.Update(ctx, d)).To(Succeed())
		}).Should(Succeed())
		Eventually(gone(ctx, si)).Should(BeTrue())
		Expect(accountsWithExternalID(ns, "deployment-fraud-agent")()).To(BeEmpty())
	})

	It("warns on the workload for a bad annotation and creates nothing", func() {
		d := deployment(ns, "bad-ttl", map[string]string{scimv1.AnnotationTargets: "acme", scimv1.AnnotationTTL: "soon"})
		Expect(k8s.Create(ctx, d)).To(Succeed())
		Eventually(eventReasons(ctx, ns, "bad-ttl")).Should(ContainElement("InvalidAnnotation"))
		Consistently(gone(ctx, &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deployment-bad-ttl"}}), "1s").
			Should(BeTrue())
	})

	It("adds the ownerReference for spec.workloadRef once the workload exists", func() {
		si := newIdentity(ns, "by-ref", "acme")
		si.Spec.WorkloadRef = &scimv1.WorkloadReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "later"}
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonWorkloadNotFound))
		Expect(condition(si, scimv1.ConditionReady).Message).To(ContainSubstring("Deployment " + ns + "/later not found"))
		Expect(accountsWithExternalID(ns, "by-ref")()).To(BeEmpty())

		d := deployment(ns, "later", nil)
		Expect(k8s.Create(ctx, d)).To(Succeed())
		Eventually(get(ctx, si), "5s").Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(si.OwnerReferences).To(ContainElement(And(
			HaveField("Kind", "Deployment"), HaveField("Name", "later"), HaveField("UID", d.UID))))
	})
})

// provisionedServiceAccount creates a ServiceAccount annotated for target "acme" and waits
// until its identity is Ready.
func provisionedServiceAccount(ctx context.Context, ns, name string) (*corev1.ServiceAccount, *scimv1.ServiceIdentity) {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name,
		Annotations: map[string]string{scimv1.AnnotationTargets: "acme"}}}
	Expect(k8s.Create(ctx, sa)).To(Succeed())
	si := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "serviceaccount-" + name}}
	Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
	return sa, si
}

var _ = Describe("Workload retirement", func() {
	ctx := context.Background()

	It("revokes the accounts as soon as the owning workload is deleted, before garbage collection", func() {
		ns := readyTargetNamespace(ctx)
		sa, si := provisionedServiceAccount(ctx, ns, "retiring")
		Expect(accountsWithExternalID(ns, si.Name)()).To(HaveLen(1))

		// envtest runs no garbage collector: the identity stays, the account must go anyway.
		Expect(k8s.Delete(ctx, sa)).To(Succeed())
		Eventually(accountsWithExternalID(ns, si.Name), "5s").Should(BeEmpty())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonOwnerDeleted))
		Expect(condition(si, scimv1.ConditionReady).Message).To(ContainSubstring("ServiceAccount " + ns + "/retiring was deleted"))
		Eventually(eventReasons(ctx, ns, si.Name)).Should(ContainElement(scimv1.ReasonOwnerDeleted))

		// What the garbage collector would do next: the finalizer has nothing left to do.
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		Eventually(gone(ctx, si)).Should(BeTrue())
	})

	It("revokes while every identity worker is busy, and sends the deprovisioning once", func() {
		ns := readyTargetNamespace(ctx)
		sa, si := provisionedServiceAccount(ctx, ns, "urgent")
		accountPath := "/Users/" + si.Status.Targets[0].ID

		// Provisioning of the "busy-" identities hangs on the target until released (or until
		// the client's 2 s timeout), holding every worker of the identity controller.
		// A namespace's targets together admit only a quarter of the workers' requests in flight
		// (at least 2), so the busy identities are spread over two other namespaces to hold every
		// worker; the revocation on "acme" goes through the slots reserved for revocations.
		busyNS := []string{readyTargetNamespace(ctx), readyTargetNamespace(ctx)}
		isBusy := func(q string) bool {
			for _, b := range busyNS {
				if strings.Contains(q, "%2F"+b+"%2Fbusy-") || strings.Contains(q, "/"+b+"/busy-") {
					return true
				}
			}
			return false
		}
		var inFlight, atRevocation atomic.Int32
		var mu sync.Mutex
		var revocations []string
		release := make(chan struct{})
		DeferCleanup(func() { close(release); scimSrv.Faults.Clear() })
		scimSrv.Faults.Add(func(r *http.Request) *scimserver.Fault {
			switch {
			case isBusy(r.URL.RawQuery):
				inFlight.Add(1)
				defer inFlight.Add(-1)
				select {
				case <-release:
				case <-r.Context().Done():
				}
			case strings.HasSuffix(r.URL.Path, accountPath) && r.Method != http.MethodGet:
				mu.Lock()
				defer mu.Unlock()
				if len(revocations) == 0 {
					atRevocation.Store(inFlight.Load())
				}
				revocations = append(revocations, r.Method)
			}
			return nil
		})
		for i := range testWorkers {
			Expect(k8s.Create(ctx, newIdentity(busyNS[i%2], fmt.Sprintf("busy-%d", i), "acme"))).To(Succeed())
		}
		Eventually(inFlight.Load).Should(BeEquivalentTo(testWorkers))

		Expect(k8s.Delete(ctx, sa)).To(Succeed())
		Eventually(accountsWithExternalID(ns, si.Name), "1500ms", "10ms").Should(BeEmpty())
		Expect(atRevocation.Load()).To(BeEquivalentTo(testWorkers), "every identity worker was busy when the account went")

		// The identity controller records the revocation without calling the target again,
		// and so does the deletion that the garbage collector would start next.
		Eventually(get(ctx, si), "10s").Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonOwnerDeleted))
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		Eventually(gone(ctx, si)).Should(BeTrue())
		mu.Lock()
		defer mu.Unlock()
		Expect(revocations).To(Equal([]string{http.MethodPatch, http.MethodDelete}), "deactivated, then deleted, once")
	})

	It("reports a refused revocation at once, without waiting for the garbage collector", func() {
		ns := readyTargetNamespace(ctx)
		sa, si := provisionedServiceAccount(ctx, ns, "refused")
		accountPath := "/Users/" + si.Status.Targets[0].ID
		DeferCleanup(scimSrv.Faults.Clear)
		scimSrv.Faults.Add(func(r *http.Request) *scimserver.Fault {
			if strings.HasSuffix(r.URL.Path, accountPath) && r.Method != http.MethodGet {
				return &scimserver.Fault{Status: http.StatusForbidden, Detail: "account is protected by policy"}
			}
			return nil
		})
		start := time.Now()
		Expect(k8s.Delete(ctx, sa)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonDeprovisionBlocked))
		Expect(time.Since(start)).To(BeNumerically("<", identity.OwnerRetiredGrace), "the revoker handed the failure over")
		Expect(condition(si, scimv1.ConditionReady).Message).To(ContainSubstring("account is protected by policy"))
		Expect(accountsWithExternalID(ns, si.Name)()).To(ConsistOf(HaveKeyWithValue("active", true)))
	})

	It("keeps an identity orphaned by its deleted workload revoked", func() {
		ns := readyTargetNamespace(ctx)
		// Owned by hand (the workload controller deletes identities it generated itself).
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "orphaned"}}
		Expect(k8s.Create(ctx, sa)).To(Succeed())
		si := newIdentity(ns, "orphaned", "acme")
		si.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ServiceAccount", Name: sa.Name, UID: sa.UID}}
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		orphan := metav1.DeletePropagationOrphan
		Expect(k8s.Delete(ctx, sa, &client.DeleteOptions{PropagationPolicy: &orphan})).To(Succeed())
		Eventually(accountsWithExternalID(ns, si.Name)).Should(BeEmpty())
		// What the garbage collector does for orphan propagation: drop the ownerReference.
		orphanedAt := time.Now()
		Eventually(func() error {
			cur := &scimv1.ServiceIdentity{}
			if err := k8s.Get(ctx, client.ObjectKeyFromObject(si), cur); err != nil {
				return err
			}
			patch := client.MergeFromWithOptions(cur.DeepCopy(), client.MergeFromWithOptimisticLock{})
			cur.OwnerReferences = nil
			return k8s.Patch(ctx, cur, patch)
		}).Should(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonOwnerDeleted))
		Expect(time.Since(orphanedAt)).To(BeNumerically("<", identity.OwnerRetiredGrace/2), "the orphaning itself wakes the identity controller")
		Expect(si.OwnerReferences).To(BeEmpty())
		Expect(condition(si, scimv1.ConditionReady).Message).To(ContainSubstring("ServiceAccount " + ns + "/orphaned was deleted"))
		Consistently(accountsWithExternalID(ns, si.Name), "2s").Should(BeEmpty())
	})

	It("does not revoke for the deletion of a same-name workload in another namespace", func() {
		ns := readyTargetNamespace(ctx)
		d := deployment(ns, "steady", map[string]string{scimv1.AnnotationTargets: "acme"})
		Expect(k8s.Create(ctx, d)).To(Succeed())
		si := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deployment-steady"}}
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		// The namesake in another namespace has an identity of the same name too, so its
		// revocation shows when the deletion has been handled.
		other := readyTargetNamespace(ctx)
		od := deployment(other, "steady", map[string]string{scimv1.AnnotationTargets: "acme"})
		Expect(k8s.Create(ctx, od)).To(Succeed())
		Eventually(get(ctx, &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: other, Name: "deployment-steady"}})).
			Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(k8s.Delete(ctx, od)).To(Succeed())
		Eventually(accountsWithExternalID(other, "deployment-steady")).Should(BeEmpty(), "the namesake's account is revoked")

		// Past the grace after which the identity controller records a retirement.
		Consistently(func(g Gomega) {
			g.Expect(accountsWithExternalID(ns, si.Name)()).To(ConsistOf(HaveKeyWithValue("active", true)))
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
			g.Expect(si).To(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		}, identity.OwnerRetiredGrace+time.Second, "100ms").Should(Succeed())
	})

	It("revokes when the workload is replaced by a same-name successor while the operator runs", func() {
		ns := readyTargetNamespace(ctx)
		d, si := deploymentIdentity(ctx, ns, "replaced", "replaced-id")
		Expect(k8s.Delete(ctx, d)).To(Succeed())
		successor := deployment(ns, "replaced", nil) // same namespace, same name, another UID
		Expect(k8s.Create(ctx, successor)).To(Succeed())
		Expect(successor.UID).NotTo(Equal(d.UID))

		Eventually(accountsWithExternalID(ns, si.Name), "5s").Should(BeEmpty())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonOwnerDeleted))
		Expect(si.OwnerReferences).NotTo(ContainElement(HaveField("UID", successor.UID)), "the successor is not adopted as the owner")
		// The successor's creation wakes the identity controller; the grace ends later: neither
		// provisions the account again.
		Consistently(accountsWithExternalID(ns, si.Name), identity.OwnerRetiredGrace+time.Second, "100ms").Should(BeEmpty())
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
		Expect(si).To(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonOwnerDeleted))
	})
})
