package secevent

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	clocktesting "k8s.io/utils/clock/testing"
)

const testSET = "eyJhbGciOiJFUzI1NiJ9.eyJqdGkiOiIxIn0.c2ln"

// answers is a handler that answers each request with the next reply (the last one repeats)
// and records what it received.
type answers struct {
	mu      sync.Mutex
	replies []reply
	got     []*http.Request
	bodies  []string
}

type reply struct {
	status int
	header map[string]string
	body   string
}

func (a *answers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	a.mu.Lock()
	a.got = append(a.got, r)
	a.bodies = append(a.bodies, string(b))
	rep := a.replies[min(len(a.got), len(a.replies))-1]
	a.mu.Unlock()
	for k, v := range rep.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(rep.status)
	_, _ = io.WriteString(w, rep.body)
}

func (a *answers) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.got)
}

func serveAnswers(t *testing.T, replies ...reply) (*answers, string) {
	t.Helper()
	a := &answers{replies: replies}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	return a, srv.URL + "/events?x=1"
}

func TestSendRequest(t *testing.T) {
	a, url := serveAnswers(t, reply{status: http.StatusAccepted})
	tx, err := NewTransmitter(url, TransmitterOptions{Token: "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Send(context.Background(), testSET); err != nil {
		t.Fatal(err)
	}
	r := a.got[0]
	checks := map[string][2]string{
		"method":        {r.Method, http.MethodPost},
		"path":          {r.URL.Path, "/events"},
		"query":         {r.URL.RawQuery, "x=1"},
		"content type":  {r.Header.Get("Content-Type"), "application/secevent+jwt"},
		"accept":        {r.Header.Get("Accept"), "application/json"},
		"authorization": {r.Header.Get("Authorization"), "Bearer s3cret"},
		"body":          {a.bodies[0], testSET},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", name, c[0], c[1])
		}
	}
	if tx.Receiver() != "http://"+r.Host {
		t.Errorf("Receiver() = %q", tx.Receiver())
	}

	// No token: no Authorization header.
	a2, url2 := serveAnswers(t, reply{status: http.StatusAccepted})
	tx2, _ := NewTransmitter(url2, TransmitterOptions{})
	if err := tx2.Send(context.Background(), testSET); err != nil {
		t.Fatal(err)
	}
	if h := a2.got[0].Header.Get("Authorization"); h != "" {
		t.Errorf("Authorization %q sent without a token", h)
	}
}

func TestSendAnswers(t *testing.T) {
	tests := []struct {
		name          string
		reply         reply
		wantOK        bool
		wantRetryable bool
		wantCode      string
		wantDesc      string
		wantAfter     time.Duration
	}{
		{name: "202 accepted", reply: reply{status: 202}, wantOK: true},
		{name: "200 counts as accepted", reply: reply{status: 200}, wantOK: true},
		{name: "400 with RFC 8935 error", reply: reply{status: 400, header: map[string]string{"Content-Type": "application/json"},
			body: `{"err":"invalid_audience","description":"aud does not contain rcv"}`},
			wantCode: ErrCodeInvalidAudience, wantDesc: "aud does not contain rcv"},
		{name: "400 without a JSON body", reply: reply{status: 400, body: "<html>nope</html>"}},
		{name: "401", reply: reply{status: 401, body: `{"err":"authentication_failed"}`}, wantCode: ErrCodeAuthenticationFailed},
		{name: "403", reply: reply{status: 403, body: `{"err":"access_denied"}`}, wantCode: ErrCodeAccessDenied},
		{name: "404", reply: reply{status: 404}},
		{name: "413", reply: reply{status: 413}},
		{name: "408 is retried", reply: reply{status: 408}, wantRetryable: true},
		{name: "429 with Retry-After", reply: reply{status: 429, header: map[string]string{"Retry-After": "7"}},
			wantRetryable: true, wantAfter: 7 * time.Second},
		{name: "500", reply: reply{status: 500}, wantRetryable: true},
		{name: "503 with Retry-After", reply: reply{status: 503, header: map[string]string{"Retry-After": "120"}},
			wantRetryable: true, wantAfter: 120 * time.Second},
		{name: "control characters in the description are removed", reply: reply{status: 400,
			body: `{"err":"invalid_request","description":"line\u001b[31m one\nline two"}`},
			wantCode: ErrCodeInvalidRequest, wantDesc: "line[31m one line two"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, url := serveAnswers(t, tt.reply)
			tx, err := NewTransmitter(url, TransmitterOptions{})
			if err != nil {
				t.Fatal(err)
			}
			err = tx.Send(context.Background(), testSET)
			if tt.wantOK {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			var de *DeliveryError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not a *DeliveryError", err)
			}
			if de.Status != tt.reply.status || de.Retryable != tt.wantRetryable || IsRetryable(err) != tt.wantRetryable ||
				de.Code != tt.wantCode || de.Description != tt.wantDesc || de.RetryAfter != tt.wantAfter {
				t.Errorf("got %+v", de)
			}
			if !strings.Contains(err.Error(), "pushing security event to http://127.0.0.1:") {
				t.Errorf("error %q does not name the receiver", err)
			}
		})
	}
}

func TestSendBoundsWhatItKeeps(t *testing.T) {
	long := strings.Repeat("x", 10_000)
	_, url := serveAnswers(t, reply{status: 400, body: `{"err":"` + long + `","description":"` + long + `"}`})
	tx, _ := NewTransmitter(url, TransmitterOptions{})
	var de *DeliveryError
	if err := tx.Send(context.Background(), testSET); !errors.As(err, &de) {
		t.Fatalf("error %v", err)
	}
	if len(de.Code) > maxErrText || len(de.Description) > maxErrText {
		t.Errorf("kept %d and %d bytes of the receiver's text", len(de.Code), len(de.Description))
	}

	// A body past MaxResponseBytes is not read to its end (nor parsed).
	huge := `{"err":"invalid_request","description":"` + strings.Repeat("y", 2*MaxResponseBytes) + `"}`
	_, url = serveAnswers(t, reply{status: 400, body: huge})
	tx, _ = NewTransmitter(url, TransmitterOptions{})
	if err := tx.Send(context.Background(), testSET); !errors.As(err, &de) || de.Code != "" {
		t.Errorf("error %v: a body beyond the cap was parsed", err)
	}
}

func TestSendNeverShowsSecrets(t *testing.T) {
	// A closed port: the transport error must not quote the URL (its query may hold a secret).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	tx, err := NewTransmitter("http://"+addr+"/hook/p4th?sig=qu3ry", TransmitterOptions{Token: "t0ken"})
	if err != nil {
		t.Fatal(err)
	}
	err = tx.Send(context.Background(), testSET)
	if !IsRetryable(err) {
		t.Fatalf("connection refused should be retryable: %v", err)
	}
	for _, secret := range []string{"qu3ry", "p4th", "t0ken", testSET} {
		if strings.Contains(err.Error(), secret) {
			t.Errorf("error %q shows %q", err, secret)
		}
	}
}

func TestSendDoesNotFollowRedirects(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere.Add(1) }))
	t.Cleanup(other.Close)
	_, url := serveAnswers(t, reply{status: http.StatusTemporaryRedirect, header: map[string]string{"Location": other.URL}})
	tx, _ := NewTransmitter(url, TransmitterOptions{Token: "t0ken"})
	err := tx.Send(context.Background(), testSET)
	if !errors.Is(err, ErrRedirect) || IsRetryable(err) {
		t.Errorf("error %v, want a non-retryable ErrRedirect", err)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the redirect was followed (%d requests)", n)
	}
	if strings.Contains(err.Error(), other.URL) {
		t.Errorf("error %q quotes the Location", err)
	}

	// A caller's client gets the same treatment.
	tx, _ = NewTransmitter(url, TransmitterOptions{HTTPClient: &http.Client{}})
	if err := tx.Send(context.Background(), testSET); !errors.Is(err, ErrRedirect) || elsewhere.Load() != 0 {
		t.Errorf("error %v with a caller's client; %d requests elsewhere", err, elsewhere.Load())
	}
}

func TestSendTimesOutEachAttempt(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	tx, _ := NewTransmitter(srv.URL, TransmitterOptions{Timeout: 50 * time.Millisecond})
	err := tx.Send(context.Background(), testSET)
	if !IsRetryable(err) || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("error %v, want a retryable timeout", err)
	}

	// The caller's own cancellation is not a failed attempt.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tx.Send(ctx, testSET); !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
	if r := tx.attempts.refused.Load() + tx.attempts.retryable.Load(); r != 1 {
		t.Errorf("%d failed attempts counted, want 1", r)
	}
}

func TestValidateReceiverURL(t *testing.T) {
	tests := []struct {
		url     string
		wantErr string
	}{
		{"https://receiver.example.com/events", ""},
		{"https://10.0.0.1:8443/events", ""},
		{"http://127.0.0.1:8080/events", ""},
		{"http://localhost/events", ""},
		{"http://[::1]:80/events", ""},
		{"http://receiver.example.com/events", "loopback"},
		{"http://10.0.0.1/events", "loopback"},
		{"ftp://receiver.example.com/", "not https"},
		{"https://user:pw@receiver.example.com/", "user info"},
		{"https://receiver.example.com/#frag", "no fragment"},
		{"/events", "absolute URL"},
		{"", "absolute URL"},
		{"https://%zz", "does not parse"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			_, err := ValidateReceiverURL(tt.url)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "pw") {
				t.Errorf("error %q quotes the password", err)
			}
		})
	}
}

func TestPlainHTTPDialsLoopbackOnly(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:80":          true,
		"127.8.0.1:80":          true,
		"[::1]:80":              true,
		"[::ffff:127.0.0.1]:80": true,
		"10.0.0.1:80":           false,
		"[fe80::1]:80":          false,
		"example.com:80":        false,
	} {
		if err := loopbackOnly("tcp", addr, nil); (err == nil) != ok {
			t.Errorf("%s: %v", addr, err)
		}
	}
}

func TestBackoff(t *testing.T) {
	p := RetryPolicy{BaseDelay: time.Second, MaxDelay: 10 * time.Second}.withDefaults()
	tests := []struct {
		n          int
		retryAfter time.Duration
		jitter     float64
		want       time.Duration
	}{
		{1, 0, 0, 500 * time.Millisecond},
		{1, 0, 0.5, 750 * time.Millisecond},
		{2, 0, 0, time.Second},
		{3, 0, 0, 2 * time.Second},
		{4, 0, 0.999, 7996 * time.Millisecond},
		{5, 0, 0, 5 * time.Second},  // 16 s capped at 10 s, jittered into [5 s, 10 s)
		{80, 0, 0, 5 * time.Second}, // no overflow
		{1, 30 * time.Second, 0, 30 * time.Second},
		{1, 3 * time.Hour, 0, MaxRetryAfter},
	}
	for _, tt := range tests {
		if got := p.Backoff(tt.n, tt.retryAfter, tt.jitter); got.Round(time.Millisecond) != tt.want {
			t.Errorf("Backoff(%d, %s, %v) = %s, want %s", tt.n, tt.retryAfter, tt.jitter, got, tt.want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	tests := map[string]time.Duration{
		"":                              0,
		"0":                             0,
		"-5":                            0,
		"30":                            30 * time.Second,
		"999999999":                     MaxRetryAfter,
		"soon":                          0,
		"Sun, 01 Nov 2026 12:01:30 GMT": 90 * time.Second,
		"Sun, 01 Nov 2026 11:00:00 GMT": 0,
	}
	for v, want := range tests {
		if got := parseRetryAfter(v, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", v, got, want)
		}
	}
}

// deliverAsync runs Deliver in the background and returns its result channel.
func deliverAsync(tx *Transmitter) <-chan error {
	done := make(chan error, 1)
	go func() { done <- tx.Deliver(context.Background(), testSET) }()
	return done
}

func newFakeTransmitter(t *testing.T, url string, p RetryPolicy) (*Transmitter, *clocktesting.FakeClock) {
	t.Helper()
	fc := clocktesting.NewFakeClock(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	tx, err := NewTransmitter(url, TransmitterOptions{Retry: p, Clock: fc, Jitter: func() float64 { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	return tx, fc
}

func TestDeliverRetriesWithBackoff(t *testing.T) {
	g := NewWithT(t)
	a, url := serveAnswers(t, reply{status: 503}, reply{status: 500}, reply{status: 202})
	tx, fc := newFakeTransmitter(t, url, RetryPolicy{BaseDelay: 2 * time.Second, MaxDelay: time.Minute})
	done := deliverAsync(tx)

	// Attempt 1 fails; the wait is BaseDelay/2 with no jitter.
	for n, wait := range []time.Duration{time.Second, 2 * time.Second} {
		g.Eventually(fc.HasWaiters).Should(BeTrue())
		g.Expect(a.count()).To(Equal(n + 1))
		fc.Step(wait - time.Millisecond)
		g.Expect(fc.HasWaiters()).To(BeTrue(), "attempt %d came before its backoff", n+2)
		fc.Step(time.Millisecond)
	}
	g.Eventually(done).Should(Receive(BeNil()))
	g.Expect(a.count()).To(Equal(3))
	g.Expect(a.bodies).To(HaveEach(testSET), "every attempt sends the same SET")
}

func TestDeliverHonoursRetryAfter(t *testing.T) {
	g := NewWithT(t)
	a, url := serveAnswers(t, reply{status: 429, header: map[string]string{"Retry-After": "120"}}, reply{status: 202})
	tx, fc := newFakeTransmitter(t, url, RetryPolicy{BaseDelay: time.Second, MaxDelay: 5 * time.Second})
	done := deliverAsync(tx)
	g.Eventually(fc.HasWaiters).Should(BeTrue())
	fc.Step(119 * time.Second) // far past the backoff, short of Retry-After
	g.Expect(fc.HasWaiters()).To(BeTrue())
	g.Expect(a.count()).To(Equal(1))
	fc.Step(time.Second)
	g.Eventually(done).Should(Receive(BeNil()))
	g.Expect(a.count()).To(Equal(2))
}

func TestDeliverDoesNotRetryARefusal(t *testing.T) {
	g := NewWithT(t)
	a, url := serveAnswers(t, reply{status: 400, body: `{"err":"invalid_key","description":"unknown kid"}`}, reply{status: 202})
	tx, fc := newFakeTransmitter(t, url, RetryPolicy{})
	var err error
	g.Eventually(deliverAsync(tx)).Should(Receive(&err))
	var de *DeliveryError
	g.Expect(errors.As(err, &de)).To(BeTrue())
	g.Expect(de.Code).To(Equal(ErrCodeInvalidKey))
	g.Expect(a.count()).To(Equal(1))
	g.Expect(fc.HasWaiters()).To(BeFalse())
}

func TestDeliverGivesUp(t *testing.T) {
	t.Run("after MaxAttempts", func(t *testing.T) {
		g := NewWithT(t)
		a, url := serveAnswers(t, reply{status: 503})
		tx, fc := newFakeTransmitter(t, url, RetryPolicy{MaxAttempts: 3, BaseDelay: time.Second})
		done := deliverAsync(tx)
		for range 2 {
			g.Eventually(fc.HasWaiters).Should(BeTrue())
			fc.Step(time.Minute)
		}
		var err error
		g.Eventually(done).Should(Receive(&err))
		g.Expect(err).To(MatchError(ErrRetriesExhausted))
		g.Expect(err.Error()).To(ContainSubstring("after 3 attempts"))
		g.Expect(err.Error()).To(ContainSubstring("503"))
		g.Expect(a.count()).To(Equal(3))
	})
	t.Run("when the next attempt would be past MaxAge", func(t *testing.T) {
		g := NewWithT(t)
		a, url := serveAnswers(t, reply{status: 503})
		// Waits of 4 s then 8 s: the second would end at 12 s, past 10 s.
		tx, fc := newFakeTransmitter(t, url, RetryPolicy{MaxAge: 10 * time.Second, BaseDelay: 8 * time.Second, MaxDelay: time.Minute})
		done := deliverAsync(tx)
		g.Eventually(fc.HasWaiters).Should(BeTrue())
		fc.Step(4 * time.Second)
		var err error
		g.Eventually(done).Should(Receive(&err))
		g.Expect(err).To(MatchError(ErrRetriesExhausted))
		g.Expect(a.count()).To(Equal(2))
	})
	t.Run("when the context ends", func(t *testing.T) {
		g := NewWithT(t)
		_, url := serveAnswers(t, reply{status: 503})
		tx, fc := newFakeTransmitter(t, url, RetryPolicy{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- tx.Deliver(ctx, testSET) }()
		g.Eventually(fc.HasWaiters).Should(BeTrue())
		cancel()
		g.Eventually(done).Should(Receive(MatchError(context.Canceled)))
	})
}

func TestJudge(t *testing.T) {
	ctx := context.Background()
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	for _, tc := range []struct {
		ctx     context.Context
		err     error
		verdict Verdict
		wait    time.Duration
	}{
		{ctx, nil, Accepted, 0},
		{canceled, context.Canceled, Canceled, 0},
		{ctx, &DeliveryError{Status: 429, Retryable: true, RetryAfter: 2 * time.Hour}, WaitAndRetry, time.Hour},
		{ctx, &DeliveryError{Status: 503, Retryable: true, RetryAfter: time.Minute}, WaitAndRetry, time.Minute},
		{ctx, &DeliveryError{Status: 502, Retryable: true}, Retry, 0},
		{ctx, &DeliveryError{Status: 400, Code: ErrCodeInvalidKey}, Refused, 0},
		{ctx, errors.New("the token could not be built"), Refused, 0},
	} {
		if v, w := Judge(tc.ctx, tc.err, time.Hour); v != tc.verdict || w != tc.wait {
			t.Errorf("Judge(%v) = %v, %v; want %v, %v", tc.err, v, w, tc.verdict, tc.wait)
		}
	}
}
