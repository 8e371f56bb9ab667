package controller

import (
	"context"
	"net/http"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	kstatus "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/test/scimserver"
)

func accountOf(ns, name string) map[string]any {
	accts := accountsWithExternalID(ns, name)()
	if len(accts) != 1 {
		return nil
	}
	return accts[0]
}

func kstatusOf(si *scimv1.ServiceIdentity) (kstatus.Status, string) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(si)
	Expect(err).NotTo(HaveOccurred())
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(scimv1.GroupVersion.String())
	u.SetKind("ServiceIdentity")
	res, err := kstatus.Compute(u)
	Expect(err).NotTo(HaveOccurred())
	return res.Status, res.Message
}

// kstatusEventually polls the kstatus of an identity as read from the API server.
func kstatusEventually(ctx context.Context, si *scimv1.ServiceIdentity) AsyncAssertion {
	return Eventually(func(g Gomega) kstatus.Status {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(si), si)).To(Succeed())
		s, _ := kstatusOf(si)
		return s
	})
}

var _ = Describe("Identity lifecycle", func() {
	ctx := context.Background()
	var ns string

	BeforeEach(func() { ns = readyTargetNamespace(ctx) })
	AfterEach(func() { scimSrv.Faults.Clear() })

	It("suspends the account within a second and re-activates it", func() {
		si := newIdentity(ns, "kill-switch", "acme")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(accountOf(ns, "kill-switch")["active"]).To(BeTrue())

		update(ctx, si, func(si *scimv1.ServiceIdentity) {
			si.Spec.Suspend = true
		})
		Eventually(func() any { return accountOf(ns, "kill-switch")["active"] }, "1s", "10ms").Should(BeFalse())
		Eventually(get(ctx, si)).Should(WithTransform(func(s *scimv1.ServiceIdentity) scimv1.TargetState {
			return s.Status.Targets[0].State
		}, Equal(scimv1.TargetStateSuspended)))
		Expect(*si.Status.Targets[0].Active).To(BeFalse())

		update(ctx, si, func(si *scimv1.ServiceIdentity) {
			si.Spec.Suspend = false
		})
		Eventually(func() any { return accountOf(ns, "kill-switch")["active"] }, "1s", "10ms").Should(BeTrue())
		Eventually(eventReasons(ctx, ns, "kill-switch")).Should(ContainElements("Suspended", "Resumed"))
		// The first provisioning is told by the Ready condition alone (one write per new identity).
		Expect(eventReasons(ctx, ns, "kill-switch")(Default)).NotTo(ContainElement(scimv1.ReasonProvisioned))
	})

	It("deprovisions at expiry, keeps the object and says Expired", func() {
		si := newIdentity(ns, "temporary", "acme")
		si.Spec.TTL = scimv1.DurationOf(4 * time.Second)
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Expect(si.Status.ExpiresAt).NotTo(BeNil())
		Expect(si.Status.ExpiresAt.Time).To(BeTemporally("~", si.CreationTimestamp.Add(4*time.Second), time.Second))
		Expect(accountOf(ns, "temporary")).NotTo(BeNil())

		Eventually(get(ctx, si), "10s").Should(HaveCondition(scimv1.ConditionExpired, metav1.ConditionTrue, scimv1.ReasonExpired))
		Expect(accountsWithExternalID(ns, "temporary")()).To(BeEmpty())
		Expect(si.Status.DeprovisionedAt).NotTo(BeNil())
		// Woken at expiry, not by polling: deprovisioned within a second or two of it.
		Expect(si.Status.DeprovisionedAt.Time).To(BeTemporally("<", si.Status.ExpiresAt.Add(2*time.Second)))
		st, _ := kstatusOf(si)
		Expect(st).To(Equal(kstatus.FailedStatus))
		Eventually(eventReasons(ctx, ns, "temporary")).Should(ContainElement(scimv1.ReasonExpired))
	})

	It("honours expiry on a healthy target while another target is stalled", func() {
		// Another application (its own server): allows no namespace, so Stalled, a TerminalError.
		other, err := scimserver.New(testToken)
		Expect(err).NotTo(HaveOccurred())
		Expect(other.Start("127.0.0.1:0")).To(Succeed())
		DeferCleanup(other.Stop)
		refusing := clusterTarget(ctx, "refusing", nil, func(t *scimv1.ClusterScimTarget) { t.Spec.Endpoint = other.Endpoint() })
		si := newIdentity(ns, "half-stalled", "acme")
		si.Spec.TargetRefs = append(si.Spec.TargetRefs, scimv1.TargetReference{Kind: scimv1.KindClusterScimTarget, Name: refusing.Name})
		si.Spec.TTL = scimv1.DurationOf(4 * time.Second)
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionStalled, metav1.ConditionTrue, scimv1.ReasonNamespaceForbidden))
		Eventually(func() map[string]any { return accountOf(ns, "half-stalled") }).ShouldNot(BeNil(), "the healthy target has the account")

		Eventually(accountsWithExternalID(ns, "half-stalled"), "10s").Should(BeEmpty(), "expired on the healthy target")
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionExpired, metav1.ConditionTrue, scimv1.ReasonExpired))
	})

	DescribeTable("applies the deletion policy, the identity's overriding the target's",
		func(targetPolicy scimv1.DeletionPolicy, identityPolicy *scimv1.DeletionPolicy, wantAccount bool, wantActive bool) {
			t := createTarget(ctx, ns, "policy", testToken, func(t *scimv1.ScimTarget) { t.Spec.DeletionPolicy = targetPolicy })
			Eventually(get(ctx, t)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
			si := newIdentity(ns, "policy-id", "policy")
			si.Spec.DeletionPolicy = identityPolicy
			Expect(k8s.Create(ctx, si)).To(Succeed())
			Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
			Expect(k8s.Delete(ctx, si)).To(Succeed())
			Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, keyOf(ns, "policy-id"), si)) }).Should(BeTrue())
			accts := accountsWithExternalID(ns, "policy-id")()
			if !wantAccount {
				Expect(accts).To(BeEmpty())
				return
			}
			Expect(accts).To(HaveLen(1))
			Expect(accts[0]["active"]).To(Equal(wantActive))
		},
		Entry("Delete removes the account", scimv1.DeletionPolicyDelete, nil, false, false),
		Entry("Deactivate keeps it inactive", scimv1.DeletionPolicyDeactivate, nil, true, false),
		Entry("Orphan leaves it untouched", scimv1.DeletionPolicyOrphan, nil, true, true),
		Entry("the identity's Orphan overrides the target's Delete", scimv1.DeletionPolicyDelete, ptr.To(scimv1.DeletionPolicyOrphan), true, true),
	)

	It("counts an account already gone from the target as deprovisioned", func() {
		si := newIdentity(ns, "already-gone", "acme")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		scimSrv.Users.Remove(si.Status.Targets[0].ID)
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		Eventually(gone(ctx, si)).Should(BeTrue())
	})

	It("releases a stuck finalizer with the force-orphan annotation", func() {
		si := newIdentity(ns, "stuck", "acme")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		scimSrv.Faults.Add(scimserver.On("", "/Users/", scimserver.Fault{Status: http.StatusServiceUnavailable, Detail: "maintenance"}))
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonDeprovisionBlocked))
		Expect(condition(si, scimv1.ConditionReady).Message).To(ContainSubstring("maintenance"))

		update(ctx, si, func(si *scimv1.ServiceIdentity) {
			si.Annotations = map[string]string{scimv1.ForceOrphanAnnotation: "true"}
		})
		Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, keyOf(ns, "stuck"), si)) }).Should(BeTrue())
		Expect(accountsWithExternalID(ns, "stuck")()).To(HaveLen(1))
		Eventually(eventReasons(ctx, ns, "stuck")).Should(ContainElement("ForceOrphaned"))
	})

	It("computes kstatus for each state on real objects", func() {
		si := newIdentity(ns, "gitops", "acme")
		Expect(k8s.Create(ctx, si)).To(Succeed())
		// (kstatus calls an object without status Current, so wait for the operator's word.)
		Eventually(get(ctx, si)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		st, _ := kstatusOf(si)
		Expect(st).To(Equal(kstatus.CurrentStatus))

		// Work pending: a spec change the target is slow to take.
		scimSrv.Faults.Add(scimserver.On(http.MethodPatch, "/Users/", scimserver.Fault{Latency: 1500 * time.Millisecond}))
		update(ctx, si, func(si *scimv1.ServiceIdentity) {
			si.Spec.DisplayName = "slow"
		})
		Expect(k8s.Get(ctx, keyOf(ns, "gitops"), si)).To(Succeed())
		st, _ = kstatusOf(si)
		Expect(st).To(Equal(kstatus.InProgressStatus))
		kstatusEventually(ctx, si).Should(Equal(kstatus.CurrentStatus))
		scimSrv.Faults.Clear()

		// Target temporarily down: InProgress with a message.
		scimSrv.Faults.Add(scimserver.On("", "/Users", scimserver.Fault{Status: http.StatusServiceUnavailable, RetryAfter: 1, Detail: "down for maintenance"}))
		down := newIdentity(ns, "gitops-down", "acme")
		Expect(k8s.Create(ctx, down)).To(Succeed())
		Eventually(func(g Gomega) string {
			g.Expect(k8s.Get(ctx, keyOf(ns, "gitops-down"), down)).To(Succeed())
			s, msg := kstatusOf(down)
			return string(s) + ": " + msg
		}).Should(And(HavePrefix(string(kstatus.InProgressStatus)), ContainSubstring("down for maintenance")))
		scimSrv.Faults.Clear()
		Eventually(get(ctx, down)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))

		// Permanent error: Failed.
		scimSrv.Users.Put(map[string]any{"userName": "gitops-bad." + ns, "externalId": "elsewhere/a/b"})
		bad := newIdentity(ns, "gitops-bad", "acme")
		Expect(k8s.Create(ctx, bad)).To(Succeed())
		kstatusEventually(ctx, bad).Should(Equal(kstatus.FailedStatus))
	})
})

var _ = Describe("ClusterScimTarget", func() {
	ctx := context.Background()

	It("serves allowed namespaces with a secret from the cluster-resource namespace and refuses others", func() {
		secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: operatorNS, Name: "corp-token"},
			StringData: map[string]string{"token": testToken}}
		Expect(k8s.Create(ctx, secret)).To(Succeed())
		allowed := newNamespace(ctx)
		labelled := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "t-", Labels: map[string]string{"scim": "yes"}}}
		Expect(k8s.Create(ctx, labelled)).To(Succeed())
		refused := newNamespace(ctx)

		cst := &scimv1.ClusterScimTarget{
			ObjectMeta: metav1.ObjectMeta{Name: "corp"},
			Spec: scimv1.ClusterScimTargetSpec{
				ScimTargetSpec: scimv1.ScimTargetSpec{
					Endpoint: endpoint(), AllowInsecureHTTP: true,
					Auth: scimv1.Auth{BearerToken: &scimv1.BearerTokenAuth{SecretKeyRef: scimv1.SecretKeySelector{Name: "corp-token", Key: "token"}}},
				},
				AllowedNamespaces: &scimv1.AllowedNamespaces{
					Names:    []string{allowed},
					Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"scim": "yes"}},
				},
			},
		}
		Expect(k8s.Create(ctx, cst)).To(Succeed())
		Eventually(get(ctx, cst)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))

		mk := func(ns string) *scimv1.ServiceIdentity {
			si := &scimv1.ServiceIdentity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "bot"},
				Spec: scimv1.ServiceIdentitySpec{TargetRefs: []scimv1.TargetReference{{Kind: scimv1.KindClusterScimTarget, Name: "corp"}}}}
			Expect(k8s.Create(ctx, si)).To(Succeed())
			return si
		}
		byName, bySelector, no := mk(allowed), mk(labelled.Name), mk(refused)
		Eventually(get(ctx, byName)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Eventually(get(ctx, bySelector)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionTrue))
		Eventually(get(ctx, no)).Should(HaveCondition(scimv1.ConditionStalled, metav1.ConditionTrue, scimv1.ReasonNamespaceForbidden))
		Expect(no).To(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonNamespaceForbidden))
		Expect(condition(no, scimv1.ConditionReady).Message).To(ContainSubstring("allowedNamespaces"))
		Expect(accountsWithExternalID(refused, "bot")()).To(BeEmpty())
		Expect(accountsWithExternalID(allowed, "bot")()).To(HaveLen(1))
	})

	It("does not read a secret of the same name from a tenant namespace", func() {
		tenant := newNamespace(ctx)
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: tenant, Name: "tenant-only"},
			StringData: map[string]string{"token": testToken}})).To(Succeed())
		cst := &scimv1.ClusterScimTarget{
			ObjectMeta: metav1.ObjectMeta{Name: "no-tenant-secrets"},
			Spec: scimv1.ClusterScimTargetSpec{ScimTargetSpec: scimv1.ScimTargetSpec{
				Endpoint: endpoint(), AllowInsecureHTTP: true,
				Auth: scimv1.Auth{BearerToken: &scimv1.BearerTokenAuth{SecretKeyRef: scimv1.SecretKeySelector{Name: "tenant-only", Key: "token"}}},
			}},
		}
		Expect(k8s.Create(ctx, cst)).To(Succeed())
		Eventually(get(ctx, cst)).Should(HaveCondition(scimv1.ConditionReady, metav1.ConditionFalse, scimv1.ReasonCredentials))
		Expect(condition(cst, scimv1.ConditionReady).Message).To(ContainSubstring(operatorNS + "/tenant-only not found"))
	})
})
