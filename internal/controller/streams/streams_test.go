package streams_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/go-jose/go-jose/v4"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
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
	Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name + "-auth"},
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

	It("refuse to push a tenant's tokens to an address namespaced targets may not reach; the cluster's stream may", func(ctx SpecContext) {
		// 127.0.0.2 is loopback, which the suite does not allow namespaced targets (only 127.0.0.1).
		recv := setreceiver.New(setreceiver.Options{Issuer: issuer, Audience: "https://siem.example/", Keys: transmitterKeys(ctx)})
		Expect(recv.Start("127.0.0.2:0")).To(Succeed())
		DeferCleanup(recv.Stop)
		ns := newNamespace(ctx)
		createTarget(ctx, ns, "app")
		pushStream(ctx, ns, "internal", recv.URL(), "Bearer x")
		cluster := pushStream(ctx, operatorNS, "soc-"+ns, recv.URL(), "Bearer x")
		DeferCleanup(func(ctx context.Context) { _ = k8s.Delete(ctx, cluster) })

		si := provisioned(ctx, ns, "batch", "app")
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		Eventually(gone(ctx, si)).Should(BeTrue())
		Expect(recv.Accepted()).To(HaveLen(1), "only the cluster's stream reached it")
		Expect(recv.Accepted()[0].Issuer).To(Equal(issuer))
		Eventually(func() []string {
			var evs corev1.EventList
			Expect(k8s.List(ctx, &evs, client.InNamespace(ns))).To(Succeed())
			var msgs []string
			for _, e := range evs.Items {
				msgs = append(msgs, e.Message)
			}
			return msgs
		}).Should(ContainElement(ContainSubstring("an address a namespace's stream may not reach")))
	})
})

var _ = Describe("A stream's state", func() {
	It("holds tokens while paused, records none while disabled, and delivers what it held once enabled", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		createTarget(ctx, ns, "app")
		r, err := ssfreceiver.Discover(ctx, tlsClient, issuer+"/namespaces/"+ns, receiverToken(ctx, ns, "siem", receiverRules...))
		Expect(err).NotTo(HaveOccurred())
		_, err = r.CreateStream(ctx, []string{riscPurged}, nil)
		Expect(err).NotTo(HaveOccurred())

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
		r, err := ssfreceiver.Discover(ctx, tlsClient, issuer+"/namespaces/"+ns, receiverToken(ctx, ns, "siem", receiverRules...))
		Expect(err).NotTo(HaveOccurred())
		_, err = r.CreateStream(ctx, []string{riscPurged}, nil)
		Expect(err).NotTo(HaveOccurred())
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
		r, err := ssfreceiver.Discover(ctx, tlsClient, issuer+"/namespaces/"+ns, receiverToken(ctx, ns, "siem", receiverRules...))
		Expect(err).NotTo(HaveOccurred())
		_, err = r.CreateStream(ctx, []string{riscPurged}, nil)
		Expect(err).NotTo(HaveOccurred())
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
		_, _, err = r.Poll(ctx, 0, jtis(evs), true)
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

var _ = Describe("The signing key", func() {
	It("is rotated without a restart; the old key stays published", Serial, func(ctx SpecContext) {
		before := transmitterKeys(ctx)
		Expect(before.Keys).To(HaveLen(1))
		Expect(before.Keys[0].KeyID).To(Equal("2026-12"))
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
			Eventually(func() string { return transmitterKeys(ctx).Keys[0].KeyID }).Should(Equal("2026-12"))
		})
		Eventually(func() []string {
			var kids []string
			for _, k := range transmitterKeys(ctx).Keys {
				kids = append(kids, k.KeyID)
			}
			return kids
		}).Should(Equal([]string{"2027-01", "2026-12"}))

		By("a receiver verifies a token signed with the new key")
		ns := newNamespace(ctx)
		r, err := ssfreceiver.Discover(ctx, tlsClient, issuer+"/namespaces/"+ns, receiverToken(ctx, ns, "siem", receiverRules...))
		Expect(err).NotTo(HaveOccurred())
		_, err = r.CreateStream(ctx, []string{riscPurged}, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(r.Verify(ctx, "after-rotation")).To(Succeed())
		pollUntil(ctx, r, func(evs []ssfreceiver.Event) bool { return len(evs) == 1 })
	})
})
