package secevent_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/nhi-dev/scim-operator/internal/secevent"
	"github.com/nhi-dev/scim-operator/test/setreceiver"
)

const (
	issuer   = "https://cluster.example/scim-operator"
	audience = "https://receiver.example/"
	endpoint = "https://app.example.com/scim/v2"
)

var start = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

// rig is a publisher wired to a real receiver over HTTP, with a fake clock for backoff.
type rig struct {
	t        *testing.T
	g        *WithT
	clock    *clocktesting.FakeClock
	signer   *secevent.Signer
	receiver *setreceiver.Receiver
	pub      *secevent.Publisher
	policy   secevent.RetryPolicy

	mu      sync.Mutex
	results []secevent.Result

	cancel  context.CancelFunc
	stopped chan error
}

type rigOptions struct {
	key       crypto.Signer
	audience  string // what the receiver expects; audience when empty
	queueSize int
	workers   int
	noStart   bool
}

func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	if o.key == nil {
		o.key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	if o.audience == "" {
		o.audience = audience
	}
	r := &rig{t: t, g: NewWithT(t), clock: clocktesting.NewFakeClock(start),
		policy: secevent.RetryPolicy{MaxAttempts: 20, MaxAge: 24 * time.Hour, BaseDelay: time.Second, MaxDelay: 10 * time.Second}}
	var err error
	if r.signer, err = secevent.NewSigner(o.key, ""); err != nil {
		t.Fatal(err)
	}
	r.receiver = setreceiver.New(setreceiver.Options{Issuer: issuer, Audience: o.audience, Keys: r.signer.PublicJWKS(),
		Token: "rcv-token", MaxAge: time.Hour, Now: r.clock.Now})
	if err := r.receiver.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.receiver.Stop)
	tx, err := secevent.NewTransmitter(r.receiver.URL(), secevent.TransmitterOptions{
		Token: "rcv-token", Clock: r.clock, Retry: r.policy, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	r.pub, err = secevent.NewPublisher(issuer, audience, r.signer, tx, secevent.PublisherOptions{
		QueueSize: o.queueSize, Workers: o.workers, Clock: r.clock,
		OnDone: func(res secevent.Result) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.results = append(r.results, res)
		}})
	if err != nil {
		t.Fatal(err)
	}
	if !o.noStart {
		r.start()
	}
	return r
}

func (r *rig) start() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.stopped = cancel, make(chan error, 1)
	go func() { r.stopped <- r.pub.Start(ctx) }()
	r.t.Cleanup(r.stop)
}

// stop stops the publisher and waits for Start to return.
func (r *rig) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.g.Eventually(r.stopped).Should(Receive(BeNil()))
	r.cancel = nil
}

func (r *rig) publish(ev secevent.Event) string {
	r.t.Helper()
	jti, err := r.pub.Publish(context.Background(), ev)
	r.g.Expect(err).NotTo(HaveOccurred())
	return jti
}

// advance steps the fake clock past any backoff a worker waits on, until cond holds.
func (r *rig) advance(cond func() bool) {
	r.t.Helper()
	r.g.Eventually(func() bool {
		if cond() {
			return true
		}
		if r.clock.HasWaiters() {
			r.clock.Step(r.policy.MaxDelay)
		}
		return false
	}).WithTimeout(20 * time.Second).Should(BeTrue())
}

func (r *rig) doneResults() []secevent.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]secevent.Result(nil), r.results...)
}

func jtis(sets []setreceiver.SET) []string {
	out := make([]string, len(sets))
	for i, s := range sets {
		out[i] = s.JTI
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tt := range []struct {
		name string
		key  crypto.Signer
		alg  string
	}{{"RSA", rk, "RS256"}, {"EC P-256", ek, "ES256"}} {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, rigOptions{key: tt.key})
			confirmed := start.Add(-2 * time.Second)
			j1 := r.publish(secevent.Event{Type: secevent.AccountDisabled, Subject: secevent.SCIMAccount(endpoint, "u-1"),
				Time: confirmed, Txn: "identity-uid/1"})
			j2 := r.publish(secevent.Event{Type: secevent.AccountPurged, Subject: secevent.SCIMAccount(endpoint, "u-1"),
				Time: confirmed, Txn: "identity-uid/1"})
			r.g.Eventually(r.receiver.Accepted).Should(HaveLen(2))

			got := map[string]setreceiver.SET{}
			for _, s := range r.receiver.Accepted() {
				got[s.JTI] = s
			}
			for jti, typ := range map[string]string{j1: setreceiver.AccountDisabled, j2: setreceiver.AccountPurged} {
				s, ok := got[jti]
				r.g.Expect(ok).To(BeTrue(), "jti %s not received", jti)
				r.g.Expect(s.EventType).To(Equal(typ))
				r.g.Expect(s.Event).To(BeEmpty())
				r.g.Expect(s.Issuer).To(Equal(issuer))
				r.g.Expect(s.Audience).To(Equal([]string{audience}))
				r.g.Expect(s.IssuedAt).To(BeTemporally("==", start))
				r.g.Expect(s.TimeOfEvent).To(BeTemporally("==", confirmed))
				r.g.Expect(s.Txn).To(Equal("identity-uid/1"))
				r.g.Expect(s.Subject).To(Equal(map[string]string{"format": "uri", "uri": endpoint + "/Users/u-1"}))
				r.g.Expect(s.KeyID).To(Equal(r.signer.KeyID()))
				r.g.Expect(s.Algorithm).To(Equal(tt.alg))
			}
			r.g.Eventually(r.doneResults).Should(HaveLen(2))
			for _, res := range r.doneResults() {
				r.g.Expect(res.Err).NotTo(HaveOccurred())
			}
			st := r.pub.Stats()
			r.g.Expect(st.Published).To(BeEquivalentTo(2))
			r.g.Expect(st.Delivered).To(BeEquivalentTo(2))
			r.g.Expect(st.AttemptsAccepted).To(BeEquivalentTo(2))
			r.g.Expect(r.receiver.Rejected()).To(BeEmpty())
		})
	}
}

func TestReceiverDownThenUpDeliversEachEventOnce(t *testing.T) {
	r := newRig(t, rigOptions{workers: 1})
	r.receiver.FailNext(-1, 503, "")
	var sent []string
	for i := range 5 {
		sent = append(sent, r.publish(secevent.Event{Type: secevent.AccountDisabled,
			Subject: secevent.Opaque("cluster/ns/agent-" + string(rune('a'+i)))}))
	}
	// The worker keeps retrying the first SET while the receiver is down.
	r.advance(func() bool { return r.receiver.Faulted() >= 4 })
	r.g.Expect(r.receiver.Accepted()).To(BeEmpty())
	r.receiver.Recover()
	r.advance(func() bool { return len(r.receiver.Accepted()) == 5 })

	r.g.Expect(jtis(r.receiver.Accepted())).To(ConsistOf(sent), "each event exactly once")
	r.g.Expect(r.receiver.Rejected()).To(BeEmpty(), "no duplicate reached the receiver")
	st := r.pub.Stats()
	r.g.Expect(st.Delivered).To(BeEquivalentTo(5))
	r.g.Expect(st.AttemptsRetryable).To(BeEquivalentTo(r.receiver.Faulted()))
	r.g.Expect(st.Refused + st.Exhausted + st.Dropped).To(BeZero())
}

func TestReceiverUnreachableThenBack(t *testing.T) {
	r := newRig(t, rigOptions{workers: 2})
	addr := r.receiver.Addr()
	r.receiver.Stop()
	var sent []string
	for range 3 {
		sent = append(sent, r.publish(secevent.Event{Type: secevent.AccountPurged, Subject: secevent.Opaque("x")}))
	}
	// Both workers fail at least twice with connection refused.
	r.advance(func() bool { return r.pub.Stats().AttemptsRetryable >= 4 })
	r.g.Expect(r.receiver.Start(addr)).To(Succeed())
	r.advance(func() bool { return len(r.receiver.Accepted()) == 3 })
	r.g.Expect(jtis(r.receiver.Accepted())).To(ConsistOf(sent))
	r.g.Expect(r.receiver.Rejected()).To(BeEmpty())
}

func TestDroppedConnectionIsRetried(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.receiver.FailNext(2, 0, "")
	jti := r.publish(secevent.Event{Type: secevent.AccountPurged, Subject: secevent.Opaque("x")})
	r.advance(func() bool { return len(r.receiver.Accepted()) == 1 })
	r.g.Expect(jtis(r.receiver.Accepted())).To(Equal([]string{jti}))
	r.g.Expect(r.receiver.Requests()).To(Equal(3))
}

func TestRefusalIsNotRetried(t *testing.T) {
	r := newRig(t, rigOptions{audience: "https://someone-else.example/"})
	jti := r.publish(secevent.Event{Type: secevent.AccountDisabled, Subject: secevent.Opaque("x")})
	r.g.Eventually(r.doneResults).Should(HaveLen(1))
	res := r.doneResults()[0]
	r.g.Expect(res.JTI).To(Equal(jti))
	var de *secevent.DeliveryError
	r.g.Expect(errors.As(res.Err, &de)).To(BeTrue(), "error %v", res.Err)
	r.g.Expect(de.Status).To(Equal(400))
	r.g.Expect(de.Code).To(Equal(secevent.ErrCodeInvalidAudience))
	r.g.Expect(de.Retryable).To(BeFalse())
	r.g.Expect(r.receiver.Requests()).To(Equal(1))
	r.g.Expect(r.clock.HasWaiters()).To(BeFalse(), "no retry scheduled")
	r.g.Expect(r.pub.Stats().Refused).To(BeEquivalentTo(1))
	r.g.Expect(res.Err.Error()).NotTo(ContainSubstring("rcv-token"))
}

func TestRetriesRunOut(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.receiver.FailNext(-1, 500, "")
	r.publish(secevent.Event{Type: secevent.AccountPurged, Subject: secevent.Opaque("x")})
	r.advance(func() bool { return len(r.doneResults()) == 1 })
	r.g.Expect(r.doneResults()[0].Err).To(MatchError(secevent.ErrRetriesExhausted))
	r.g.Expect(r.receiver.Requests()).To(Equal(r.policy.MaxAttempts))
	r.g.Expect(r.pub.Stats().Exhausted).To(BeEquivalentTo(1))
}

func TestQueueIsBounded(t *testing.T) {
	r := newRig(t, rigOptions{queueSize: 2, noStart: true})
	ev := secevent.Event{Type: secevent.AccountPurged, Subject: secevent.Opaque("x")}
	r.publish(ev)
	r.publish(ev)
	_, err := r.pub.Publish(context.Background(), ev)
	r.g.Expect(err).To(MatchError(secevent.ErrQueueFull))
	st := r.pub.Stats()
	r.g.Expect(st.Queued).To(Equal(2))
	r.g.Expect(st.Dropped).To(BeEquivalentTo(1))
	r.g.Expect(st.Published).To(BeEquivalentTo(2))

	// The queued ones are delivered once the publisher runs.
	r.start()
	r.g.Eventually(r.receiver.Accepted).Should(HaveLen(2))
	r.g.Eventually(func() int { return r.pub.Stats().Queued }).Should(BeZero())
}

func TestPublishRefusesABadEvent(t *testing.T) {
	r := newRig(t, rigOptions{noStart: true})
	_, err := r.pub.Publish(context.Background(), secevent.Event{Type: secevent.AccountPurged})
	r.g.Expect(err).To(MatchError(ContainSubstring("subject")))
	r.g.Expect(r.pub.Stats().Queued).To(BeZero())
}

func TestShutdown(t *testing.T) {
	r := newRig(t, rigOptions{workers: 1})
	r.receiver.FailNext(-1, 503, "")
	for range 3 {
		r.publish(secevent.Event{Type: secevent.AccountPurged, Subject: secevent.Opaque("x")})
	}
	r.g.Eventually(r.clock.HasWaiters).Should(BeTrue()) // the worker waits to retry the first
	r.g.Expect(r.pub.Start(context.Background())).To(MatchError(secevent.ErrAlreadyStarted))
	r.stop()
	st := r.pub.Stats()
	r.g.Expect(st.Abandoned).To(BeEquivalentTo(3), "one being retried, two queued")
	r.g.Expect(r.doneResults()).To(BeEmpty())
}

func TestCollector(t *testing.T) {
	r := newRig(t, rigOptions{queueSize: 1, noStart: true})
	ev := secevent.Event{Type: secevent.AccountPurged, Subject: secevent.Opaque("x")}
	r.publish(ev)
	_, _ = r.pub.Publish(context.Background(), ev)
	c := secevent.NewCollector(r.pub)
	want := `
# HELP scim_operator_security_events_queued Security Event Tokens waiting for a delivery worker.
# TYPE scim_operator_security_events_queued gauge
scim_operator_security_events_queued 1
`
	r.g.Expect(testutil.CollectAndCompare(c, strings.NewReader(want), "scim_operator_security_events_queued")).To(Succeed())

	r.start()
	r.g.Eventually(r.receiver.Accepted).Should(HaveLen(1))
	r.g.Eventually(func() int64 { return r.pub.Stats().Delivered }).Should(BeEquivalentTo(1))
	want = `
# HELP scim_operator_security_event_delivery_attempts_total Security Event Token delivery attempts by the receiver's answer: accepted, retryable (408, 429, 5xx, no answer), refused.
# TYPE scim_operator_security_event_delivery_attempts_total counter
scim_operator_security_event_delivery_attempts_total{result="accepted"} 1
scim_operator_security_event_delivery_attempts_total{result="refused"} 0
scim_operator_security_event_delivery_attempts_total{result="retryable"} 0
# HELP scim_operator_security_events_total Security Event Tokens by outcome: published (queued), dropped (queue full), delivered, possibly_delivered (refused as invalid_request after an unanswered attempt), refused (the receiver will not accept it), exhausted (retries ran out), abandoned (operator stopped), given_up (kept in the outbox and not accepted within its maximum age).
# TYPE scim_operator_security_events_total counter
scim_operator_security_events_total{outcome="abandoned"} 0
scim_operator_security_events_total{outcome="delivered"} 1
scim_operator_security_events_total{outcome="dropped"} 1
scim_operator_security_events_total{outcome="exhausted"} 0
scim_operator_security_events_total{outcome="given_up"} 0
scim_operator_security_events_total{outcome="possibly_delivered"} 0
scim_operator_security_events_total{outcome="published"} 1
scim_operator_security_events_total{outcome="refused"} 0
`
	r.g.Expect(testutil.CollectAndCompare(c, strings.NewReader(want),
		"scim_operator_security_events_total", "scim_operator_security_event_delivery_attempts_total")).To(Succeed())
	r.g.Expect(testutil.CollectAndLint(c)).To(BeEmpty())
}

// A SET the receiver accepted without the answer reaching the operator comes back as a
// duplicate jti on retry: delivered once, reported as possibly delivered, not as a refusal.
func TestUnansweredAcceptanceThenReplay(t *testing.T) {
	r := newRig(t, rigOptions{})
	r.receiver.AcceptThenDrop(1)
	jti := r.publish(secevent.Event{Type: secevent.AccountPurged, Subject: secevent.Opaque("x")})
	r.advance(func() bool { return len(r.doneResults()) == 1 })
	r.g.Expect(jtis(r.receiver.Accepted())).To(Equal([]string{jti}), "accepted exactly once")
	r.g.Expect(r.receiver.Rejected()).To(ConsistOf(HaveField("Description", ContainSubstring("duplicate jti"))))
	err := r.doneResults()[0].Err
	r.g.Expect(err).To(MatchError(secevent.ErrPossiblyDelivered))
	var de *secevent.DeliveryError
	r.g.Expect(errors.As(err, &de)).To(BeTrue())
	r.g.Expect(de.Code).To(Equal(secevent.ErrCodeInvalidRequest))
	st := r.pub.Stats()
	r.g.Expect(st.PossiblyDelivered).To(BeEquivalentTo(1))
	r.g.Expect(st.Refused).To(BeZero())
}

// Send makes one attempt with the jti it is given (the outbox's), and never waits: a
// Retry-After comes back in the error, whatever its length, for the caller's delay queue.
func TestSendKeepsTheJTIAndReturnsRetryAfter(t *testing.T) {
	r := newRig(t, rigOptions{noStart: true})
	ev := secevent.Event{Type: secevent.AccountPurged, Subject: secevent.Opaque("x")}
	r.g.Expect(r.pub.Send(context.Background(), "", ev)).To(MatchError(secevent.ErrNoJTI))
	r.receiver.FailNext(1, 503, "7200")
	err := r.pub.Send(context.Background(), "jti-1", ev)
	var de *secevent.DeliveryError
	r.g.Expect(errors.As(err, &de)).To(BeTrue(), "error %v", err)
	r.g.Expect(de.Retryable).To(BeTrue())
	r.g.Expect(de.RetryAfter).To(Equal(secevent.MaxRetryAfter))
	r.g.Expect(r.clock.HasWaiters()).To(BeFalse(), "nothing sleeps")

	r.g.Expect(r.pub.Send(context.Background(), "jti-1", ev)).To(Succeed())
	r.g.Expect(jtis(r.receiver.Accepted())).To(Equal([]string{"jti-1"}))
	err = r.pub.Send(context.Background(), "jti-1", ev)
	r.g.Expect(errors.As(err, &de)).To(BeTrue())
	r.g.Expect(de.Code).To(Equal(secevent.ErrCodeInvalidRequest), "the receiver de-duplicates on the jti")
	r.pub.GaveUp()
	st := r.pub.Stats()
	r.g.Expect([]int64{st.Delivered, st.Refused, st.GivenUp, st.AttemptsRetryable}).To(Equal([]int64{1, 1, 1, 1}))
}
