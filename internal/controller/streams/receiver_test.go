package streams_test

import (
	"context"
	"fmt"
	"os"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/test/ssfreceiver"
)

const (
	riscPurged   = "https://schemas.openid.net/secevent/risc/event-type/account-purged"
	riscDisabled = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
	scimDelete   = "urn:ietf:params:scim:event:prov:delete"
	verification = "https://schemas.openid.net/secevent/ssf/event-type/verification"
)

// pollAll polls until f holds for the events seen so far (acknowledging nothing).
func pollUntil(ctx context.Context, r *ssfreceiver.Receiver, f func([]ssfreceiver.Event) bool) []ssfreceiver.Event {
	GinkgoHelper()
	var got []ssfreceiver.Event
	Eventually(func(g Gomega) {
		evs, _, err := r.Poll(ctx, 100, nil, true)
		g.Expect(err).NotTo(HaveOccurred())
		got = evs
		g.Expect(f(evs)).To(BeTrue(), "events so far: %v", types(evs))
	}).Should(Succeed())
	return got
}

func types(evs []ssfreceiver.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

func ofType(evs []ssfreceiver.Event, t string) []ssfreceiver.Event {
	var out []ssfreceiver.Event
	for _, e := range evs {
		if e.Type == t {
			out = append(out, e)
		}
	}
	return out
}

func jtis(evs []ssfreceiver.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.JTI)
	}
	return out
}

var _ = Describe("A receiver written from the specifications", func() {
	It("discovers the transmitter, creates a poll stream, verifies it, sees a revocation, acknowledges it, and after a restart sees nothing again", Serial, func(ctx SpecContext) {
		ns := newNamespace(ctx)
		token := receiverToken(ctx, ns, "siem", receiverRules...)
		createTarget(ctx, ns, "app")
		nsIssuer := issuer + "/namespaces/" + ns

		By("discovering the namespace's issuer and its keys")
		var opts []ssfreceiver.Option
		if path := os.Getenv("SSF_TRACE"); path != "" { // docs/security-events.md shows this exchange
			f, err := os.Create(path)
			Expect(err).NotTo(HaveOccurred())
			DeferCleanup(f.Close)
			opts = append(opts, ssfreceiver.WithTrace(f))
		}
		r, err := ssfreceiver.Discover(ctx, tlsClient, nsIssuer, token, opts...)
		Expect(err).NotTo(HaveOccurred())
		Expect(r.Metadata).To(HaveKeyWithValue("spec_version", "1_0"))
		Expect(r.Metadata["delivery_methods_supported"]).To(ContainElements("urn:ietf:rfc:8935", "urn:ietf:rfc:8936"))

		By("creating a poll stream (no delivery given: poll)")
		cfg, err := r.CreateStream(ctx, []string{riscPurged, riscDisabled, scimDelete, "https://example.com/unknown"}, nil)
		Expect(err).NotTo(HaveOccurred())
		Expect(cfg["delivery"]).To(HaveKeyWithValue("method", "urn:ietf:rfc:8936"))
		Expect(cfg["events_delivered"]).To(ConsistOf(riscPurged, riscDisabled, scimDelete, verification))
		Expect(cfg["aud"]).To(Equal("system:serviceaccount:" + ns + ":siem"))
		read, err := r.ReadStream(ctx)
		Expect(err).NotTo(HaveOccurred())
		Expect(read["stream_id"]).To(Equal(r.StreamID()))

		By("verifying the stream: the verification event carries the state")
		Expect(r.Verify(ctx, "state-1")).To(Succeed())
		evs := pollUntil(ctx, r, func(evs []ssfreceiver.Event) bool { return len(ofType(evs, verification)) == 1 })
		v := ofType(evs, verification)[0]
		Expect(v.Payload).To(HaveKeyWithValue("state", "state-1"))
		Expect(v.SubID).To(Equal(map[string]any{"format": "opaque", "id": r.StreamID()}))
		_, _, err = r.Poll(ctx, 0, []string{v.JTI}, true)
		Expect(err).NotTo(HaveOccurred())

		By("deleting an identity: its account's revocation reaches the stream, and the identity waits for the receiver")
		si := provisioned(ctx, ns, "builder", "app")
		accountID := si.Status.Targets[0].ID
		Expect(k8s.Delete(ctx, si)).To(Succeed())
		evs = pollUntil(ctx, r, func(evs []ssfreceiver.Event) bool { return len(evs) == 2 })
		Expect(types(evs)).To(ConsistOf(riscPurged, scimDelete))
		for _, e := range evs {
			Expect(e.Claims["txn"]).To(Equal(string(si.UID)))
			Expect(e.Claims["toe"]).To(BeNumerically(">", 0))
		}
		risc, scimEv := ofType(evs, riscPurged)[0], ofType(evs, scimDelete)[0]
		if r.Trace != nil {
			for _, e := range []ssfreceiver.Event{risc, scimEv} {
				_, _ = fmt.Fprintf(r.Trace, "# the claims of %s, verified\n\n%s\n\n---\n\n", e.JTI, ssfreceiver.Decode(e))
			}
		}
		Expect(risc.SubID).To(HaveKeyWithValue("format", "uri"))
		Expect(risc.SubID["uri"]).To(Equal(scimSrv.Endpoint() + "/Users/" + accountID))
		Expect(scimEv.SubID).To(Equal(map[string]any{"format": "scim", "uri": "/Users/" + accountID,
			"externalId": testClusterID + "/" + ns + "/builder"}))
		Consistently(func() error { return k8s.Get(ctx, client.ObjectKeyFromObject(si), si) }, "1s").Should(Succeed())

		By("acknowledging one of them, and restarting the operator")
		_, _, err = r.Poll(ctx, 0, []string{risc.JTI}, true)
		Expect(err).NotTo(HaveOccurred())
		restartManager()

		By("seeing only the one not acknowledged, with the same jti")
		evs = pollUntil(ctx, r, func(evs []ssfreceiver.Event) bool { return len(evs) == 1 })
		Expect(jtis(evs)).To(Equal([]string{scimEv.JTI}))

		By("acknowledging it: the identity goes, and nothing is offered again")
		_, _, err = r.Poll(ctx, 0, []string{scimEv.JTI}, true)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKeyFromObject(si), si)) }).Should(BeTrue())
		evs, more, err := r.Poll(ctx, 100, nil, false) // a long poll that ends empty
		Expect(err).NotTo(HaveOccurred())
		Expect(evs).To(BeEmpty())
		Expect(more).To(BeFalse())

		By("deleting the stream")
		Expect(r.DeleteStream(ctx)).To(Succeed())
		_, err = r.ReadStream(ctx)
		var se *ssfreceiver.StatusError
		Expect(err).To(BeAssignableToTypeOf(se))
		Expect(err.(*ssfreceiver.StatusError).Code).To(Equal(404))
	})

	It("is refused without a token (401), and without RBAC's leave (403)", func(ctx SpecContext) {
		ns := newNamespace(ctx)
		_, err := ssfreceiver.Discover(ctx, tlsClient, issuer+"/namespaces/"+ns, "")
		Expect(err).NotTo(HaveOccurred(), "discovery and keys are public")
		nobody := receiverToken(ctx, ns, "nobody")
		r, err := ssfreceiver.Discover(ctx, tlsClient, issuer+"/namespaces/"+ns, nobody)
		Expect(err).NotTo(HaveOccurred())
		_, err = r.CreateStream(ctx, []string{riscPurged}, nil)
		Expect(err).To(MatchError(ContainSubstring("HTTP 403")))
		Expect(err.Error()).To(ContainSubstring("may not create securityeventstreams"))
		r.Token = "not-a-token"
		_, err = r.CreateStream(ctx, []string{riscPurged}, nil)
		Expect(err).To(MatchError(ContainSubstring("HTTP 401")))

		By("a receiver of another namespace cannot reach this namespace's stream")
		owner, err := ssfreceiver.Discover(ctx, tlsClient, issuer+"/namespaces/"+ns, receiverToken(ctx, ns, "owner", receiverRules...))
		Expect(err).NotTo(HaveOccurred())
		_, err = owner.CreateStream(ctx, []string{riscPurged}, nil)
		Expect(err).NotTo(HaveOccurred())
		other := newNamespace(ctx)
		stranger := receiverToken(ctx, other, "stranger", receiverRules...)
		r.Token, r.Stream = stranger, owner.Stream
		_, err = r.ReadStream(ctx)
		Expect(err).To(MatchError(ContainSubstring("HTTP 403")))
		_, _, err = r.Poll(ctx, 10, nil, true)
		Expect(err).To(MatchError(ContainSubstring("HTTP 403")))

		By("and its own issuer does not serve this namespace's stream")
		own, err := ssfreceiver.Discover(ctx, tlsClient, issuer+"/namespaces/"+other, stranger)
		Expect(err).NotTo(HaveOccurred())
		own.Stream = map[string]any{"stream_id": owner.StreamID()}
		_, err = own.ReadStream(ctx)
		Expect(err).To(MatchError(ContainSubstring("HTTP 404")))
	})

	It("carries only its namespace's revocations on a tenant's stream; the cluster's stream carries every namespace's", func(ctx SpecContext) {
		a, b := newNamespace(ctx), newNamespace(ctx)
		ra, err := ssfreceiver.Discover(ctx, tlsClient, issuer+"/namespaces/"+a, receiverToken(ctx, a, "siem", receiverRules...))
		Expect(err).NotTo(HaveOccurred())
		_, err = ra.CreateStream(ctx, []string{riscPurged, scimDelete}, nil)
		Expect(err).NotTo(HaveOccurred())
		rc, err := ssfreceiver.Discover(ctx, tlsClient, issuer, receiverToken(ctx, operatorNS, "soc-"+a, receiverRules...))
		Expect(err).NotTo(HaveOccurred())
		_, err = rc.CreateStream(ctx, []string{riscPurged, scimDelete}, nil)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func(ctx context.Context) { _ = rc.DeleteStream(ctx) })
		for _, ns := range []string{a, b} {
			createTarget(ctx, ns, "app")
			Expect(k8s.Delete(ctx, provisioned(ctx, ns, "job", "app"))).To(Succeed())
		}
		// The cluster's stream: both namespaces' revocations, and only their RISC tokens: an RFC
		// 9967 subject (/Users/<id>) does not name the target, and a tenant's own SCIM server
		// chooses the ids of its namespaced targets.
		evs := pollUntil(ctx, rc, func(evs []ssfreceiver.Event) bool { return len(evs) >= 2 })
		Expect(types(evs)).To(ConsistOf(riscPurged, riscPurged))
		Expect(evs[0].Claims["txn"]).NotTo(Equal(evs[1].Claims["txn"]))
		// The namespace's stream: its own revocation, as both kinds of token.
		evs = pollUntil(ctx, ra, func(evs []ssfreceiver.Event) bool { return len(evs) == 2 })
		Expect(types(evs)).To(ConsistOf(riscPurged, scimDelete))
		Expect(strings.Contains(ofType(evs, riscPurged)[0].SubID["uri"].(string), "/Users/")).To(BeTrue())
		Consistently(func() int {
			evs, _, err := ra.Poll(ctx, 100, nil, true)
			Expect(err).NotTo(HaveOccurred())
			return len(evs)
		}, "1s").Should(Equal(2))
		// Acknowledge everything so the identities go.
		for _, r := range []*ssfreceiver.Receiver{ra, rc} {
			evs, _, err := r.Poll(ctx, 100, nil, true)
			Expect(err).NotTo(HaveOccurred())
			_, _, err = r.Poll(ctx, 0, jtis(evs), true)
			Expect(err).NotTo(HaveOccurred())
		}
		Eventually(func() int {
			var list scimv1.ServiceIdentityList
			Expect(k8s.List(ctx, &list, client.InNamespace(b))).To(Succeed())
			return len(list.Items)
		}).Should(BeZero())
	})
})
