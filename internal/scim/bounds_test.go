package scim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// Tests of the bounds a hostile or broken provider meets: no redirects, capped lists, no
// resources without ids, bounded and clean provider text, a bounded number of requests in
// flight.

func TestRedirectsAreNotFollowed(t *testing.T) {
	ctx := context.Background()
	calls := map[string]func(c *Client) error{
		"GET": func(c *Client) error { _, err := c.Get(ctx, "Users", "u1"); return err },
		"POST": func(c *Client) error {
			_, err := c.Create(ctx, "Users", Resource{"userName": "x"})
			return err
		},
		"PUT": func(c *Client) error {
			_, err := c.Replace(ctx, "Users", "u1", Resource{"userName": "x"}, "")
			return err
		},
		"PATCH": func(c *Client) error {
			_, err := c.Patch(ctx, "Users", "u1", []PatchOp{{Op: "replace", Path: "active", Value: false}}, "")
			return err
		},
		"DELETE": func(c *Client) error { return c.Delete(ctx, "Users", "u1") },
		"list":   func(c *Client) error { _, err := c.ListAll(ctx, "Users", "", 10, 0); return err },
	}
	for _, status := range []int{301, 302, 303, 307, 308} {
		for name, call := range calls {
			t.Run(fmt.Sprintf("%d %s", status, name), func(t *testing.T) {
				var internalHits, hits atomic.Int32
				internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					internalHits.Add(1)
					_, _ = io.WriteString(w, `{"id":"stolen","secret":"internal data"}`)
				}))
				defer internal.Close()
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					hits.Add(1)
					http.Redirect(w, r, internal.URL+"/latest/meta-data", status)
				}))
				defer srv.Close()
				// The caller's client would follow redirects; the SCIM client must not.
				follow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return nil }}
				c, err := New(srv.URL+"/scim/v2", Options{HTTPClient: follow, Auth: BearerToken("s3cret"), RetryBase: time.Millisecond})
				if err != nil {
					t.Fatal(err)
				}
				err = call(c)
				var e *Error
				if !errors.Is(err, ErrRedirect) || !errors.As(err, &e) || e.Status != status || IsRetryable(err) {
					t.Fatalf("want a non-retryable ErrRedirect *Error with status %d, got %v", status, err)
				}
				if internalHits.Load() != 0 {
					t.Errorf("the redirect was followed: the internal server got %d requests", internalHits.Load())
				}
				if hits.Load() != 1 {
					t.Errorf("the target got %d requests, want 1 (a redirect is not retried)", hits.Load())
				}
				msg := err.Error()
				if strings.Contains(msg, strings.TrimPrefix(internal.URL, "http://")) || strings.Contains(msg, "meta-data") {
					t.Errorf("the error quotes the Location header: %s", msg)
				}
				if !strings.Contains(msg, "redirects are not followed") {
					t.Errorf("the error does not say why: %s", msg)
				}
				if follow.CheckRedirect(nil, nil) != nil {
					t.Error("the caller's http.Client was changed")
				}
			})
		}
	}
}

// pager serves endless or oversized lists and counts the pages asked for.
func pager(t *testing.T, page func(start int) string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var pages atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pages.Add(1)
		var start int
		_, _ = fmt.Sscan(r.URL.Query().Get("startIndex"), &start)
		_, _ = io.WriteString(w, page(start))
	}))
	t.Cleanup(srv.Close)
	return srv, &pages
}

func items(from, n, pad int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"u%d","userName":"%s"}`, from+i, strings.Repeat("x", pad))
	}
	return b.String()
}

func TestListBounds(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		opts      Options
		maxPages  int
		page      func(start int) string
		wantErr   error
		wantPages int32 // the most pages that may be read
		wantItems int   // on success
	}{
		{
			name: "a provider that pages forever hits the page cap",
			opts: Options{MaxListPages: 20},
			page: func(start int) string {
				return fmt.Sprintf(`{"totalResults":1000000000,"Resources":[%s]}`, items(start, 1, 1))
			},
			wantErr: ErrLimitExceeded, wantPages: 20,
		},
		{
			name: "the caller's maxPages lowers the cap", opts: Options{MaxListPages: 20}, maxPages: 3,
			page: func(start int) string {
				return fmt.Sprintf(`{"totalResults":1000000000,"Resources":[%s]}`, items(start, 1, 1))
			},
			wantErr: ErrLimitExceeded, wantPages: 3,
		},
		{
			name: "the caller's maxPages cannot raise the cap", opts: Options{MaxListPages: 5}, maxPages: 1000,
			page: func(start int) string {
				return fmt.Sprintf(`{"Resources":[%s]}`, items(start, 1, 1))
			},
			wantErr: ErrLimitExceeded, wantPages: 5,
		},
		{
			name: "too many items in total", opts: Options{MaxListItems: 250},
			page: func(start int) string {
				return fmt.Sprintf(`{"totalResults":100000,"Resources":[%s]}`, items(start, 100, 1))
			},
			wantErr: ErrLimitExceeded, wantPages: 3,
		},
		{
			name: "too many items in one page", opts: Options{MaxListItems: 100},
			page: func(start int) string {
				return fmt.Sprintf(`{"Resources":[%s]}`, items(start, 5000, 0))
			},
			wantErr: ErrLimitExceeded, wantPages: 1,
		},
		{
			name: "too many bytes across pages", opts: Options{MaxListBytes: 1 << 20},
			page: func(start int) string {
				return fmt.Sprintf(`{"totalResults":100000,"Resources":[%s]}`, items(start, 10, 30_000))
			},
			wantErr: ErrLimitExceeded, wantPages: 4,
		},
		{
			name: "a list within every cap is read whole", opts: Options{MaxListPages: 5, MaxListItems: 50, MaxListBytes: 1 << 20},
			page: func(start int) string {
				if start > 50 {
					return `{"Resources":[]}`
				}
				return fmt.Sprintf(`{"totalResults":50,"Resources":[%s]}`, items(start, 10, 10))
			},
			wantPages: 5, wantItems: 50,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, pages := pager(t, tt.page)
			c, _ := New(srv.URL, tt.opts)
			got, err := c.ListAll(ctx, "Users", "", 10, tt.maxPages)
			if pages.Load() > tt.wantPages {
				t.Errorf("read %d pages, want at most %d", pages.Load(), tt.wantPages)
			}
			if tt.wantErr == nil {
				if err != nil || len(got) != tt.wantItems {
					t.Fatalf("got %d items, %v; want %d", len(got), err, tt.wantItems)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || IsRetryable(err) {
				t.Fatalf("want a non-retryable %v, got %v", tt.wantErr, err)
			}
			if got != nil {
				t.Errorf("a list beyond a cap must not be returned truncated; got %d items", len(got))
			}
			// Find goes through the same caps (a provider that ignores the filter).
			if _, err := c.Find(ctx, "Users", "externalId", "c/ns/x"); !errors.Is(err, ErrLimitExceeded) {
				t.Errorf("Find: want ErrLimitExceeded, got %v", err)
			}
		})
	}
}

func TestListDefaultsAreDocumented(t *testing.T) {
	c, _ := New("https://example.com/scim/v2", Options{})
	if c.opts.MaxListPages != 500 || c.opts.MaxListItems != 50_000 || c.opts.MaxListBytes != 32<<20 || c.opts.MaxBodyBytes != 4<<20 {
		t.Fatalf("defaults changed: %+v; update the Options comments and the README", c.opts)
	}
}

func TestResourcesWithoutIDAreRefused(t *testing.T) {
	ctx := context.Background()
	noID := `{"userName":"a.b","externalId":"c/ns/a","active":true}`
	tests := []struct {
		name string
		body string
		call func(c *Client) error
	}{
		{"get", noID, func(c *Client) error { _, err := c.Get(ctx, "Users", "u1"); return err }},
		{"get with an empty body", "", func(c *Client) error { _, err := c.Get(ctx, "Users", "u1"); return err }},
		{"get with a numeric id", `{"id":7,"userName":"a"}`, func(c *Client) error { _, err := c.Get(ctx, "Users", "u1"); return err }},
		{"create", noID, func(c *Client) error { _, err := c.Create(ctx, "Users", Resource{"userName": "a.b"}); return err }},
		{"create with an empty body", "", func(c *Client) error { _, err := c.Create(ctx, "Users", Resource{"userName": "a.b"}); return err }},
		{"replace", noID, func(c *Client) error {
			_, err := c.Replace(ctx, "Users", "u1", Resource{"userName": "a.b"}, "")
			return err
		}},
		{"patch", noID, func(c *Client) error {
			_, err := c.Patch(ctx, "Users", "u1", []PatchOp{{Op: "replace", Path: "active", Value: false}}, "")
			return err
		}},
		{"find: a user without id", `{"totalResults":2,"Resources":[{"id":"u1","externalId":"x"},{"externalId":"x"}]}`, func(c *Client) error {
			_, err := c.Find(ctx, "Users", "externalId", "x")
			return err
		}},
		{"list all: a group with an empty id", `{"totalResults":1,"Resources":[{"id":"","displayName":"admins"}]}`, func(c *Client) error {
			_, err := c.ListAll(ctx, "Groups", "", 10, 0)
			return err
		}},
		{"list: one page", `{"totalResults":1,"Resources":[{"userName":"a"}]}`, func(c *Client) error {
			_, err := c.List(ctx, "Users", "", 1, 1)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := serve(t, 200, nil, tt.body)
			if err := tt.call(c); !errors.Is(err, ErrMalformedResponse) {
				t.Fatalf("want ErrMalformedResponse, got %v", err)
			}
		})
	}
	// A 204 to PATCH or PUT is still fine: there is no resource to judge.
	c, _ := serve(t, 204, nil, "")
	if _, err := c.Patch(ctx, "Users", "u1", []PatchOp{{Op: "replace", Path: "active", Value: false}}, ""); err != nil {
		t.Errorf("PATCH answered 204: %v", err)
	}
}

func TestEmptyIDSendsNothing(t *testing.T) {
	ctx := context.Background()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	c, _ := New(srv.URL, Options{})
	for name, call := range map[string]func() error{
		"get":    func() error { _, err := c.Get(ctx, "Users", ""); return err },
		"put":    func() error { _, err := c.Replace(ctx, "Users", "", Resource{}, ""); return err },
		"patch":  func() error { _, err := c.Patch(ctx, "Users", "", nil, ""); return err },
		"delete": func() error { return c.Delete(ctx, "Users", "") },
		"remove member": func() error {
			return c.RemoveMember(ctx, "", "u1")
		},
	} {
		if err := call(); !errors.Is(err, ErrEmptyID) || IsRetryable(err) {
			t.Errorf("%s: want a non-retryable ErrEmptyID, got %v", name, err)
		}
	}
	if hits.Load() != 0 {
		t.Fatalf("%d requests were sent for empty ids", hits.Load())
	}
}

func checkClean(t *testing.T, what, s string, maxBytes int) {
	t.Helper()
	if len(s) > maxBytes {
		t.Errorf("%s: %d bytes, want at most %d", what, len(s), maxBytes)
	}
	if !utf8.ValidString(s) {
		t.Errorf("%s: invalid UTF-8: %q", what, s)
	}
	for _, r := range s {
		if unicode.IsControl(r) || isBidiControl(r) {
			t.Errorf("%s: control character %U in %q", what, r, s)
			return
		}
	}
}

func TestProviderTextIsBoundedAndClean(t *testing.T) {
	hostile := strings.Repeat("bad\x00\x1b[31m\xff\xfe\u202Eevil\n", 5000) // ~100 KB
	for _, status := range []int{400, 409, 500} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			body := fmt.Sprintf(`{"status":"%d","scimType":%s,"detail":%s}`, status, quoteRaw(strings.Repeat("uniqueness\x07", 100)), quoteRaw(hostile))
			c, _ := serve(t, status, nil, body)
			_, err := c.Create(context.Background(), "Users", Resource{"userName": "x"})
			var e *Error
			if !errors.As(err, &e) || e.Status != status {
				t.Fatalf("want *Error %d, got %v", status, err)
			}
			checkClean(t, "detail", e.Detail, 256)
			checkClean(t, "scimType", e.ScimType, 64)
			checkClean(t, "message", err.Error(), 512)
			if !strings.HasPrefix(e.Detail, "bad[31m") {
				t.Errorf("the readable part of the detail is lost: %q", e.Detail[:20])
			}
		})
	}
}

// quoteRaw renders s as a JSON string literal keeping invalid UTF-8 bytes raw, as a hostile
// provider would send them (encoding/json would replace them).
func quoteRaw(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20:
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func TestSanitize(t *testing.T) {
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"plain", 0, "plain"},
		{"plain", 100, "plain"},
		{"line\nbreak\ttab\r", 0, "line break tab "},
		{"nul\x00esc\x1b[0mdel\x7f c1\u0085", 0, "nulesc[0mdel c1"},
		{"invalid \xff\xfe utf8", 0, "invalid \uFFFD\uFFFD utf8"},
		{"bidi \u202Egnp.exe\u202C", 0, "bidi gnp.exe"},
		{"exactly ten", 11, "exactly ten"},
		{"cut here please", 10, "cut her..."},
		// "é" is 2 bytes, "€" 3: a cut never splits them.
		{"ééééé", 8, "éé..."},
		{"a€€€€", 9, "a€..."},
		{"anything", 1, "..."},
	}
	for _, tt := range tests {
		if got := Sanitize(tt.in, tt.max); got != tt.want {
			t.Errorf("Sanitize(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}

func FuzzSanitize(f *testing.F) {
	f.Add("bad\x00\xff\u202E text", 16)
	f.Add("ééé", 5)
	f.Fuzz(func(t *testing.T, s string, n int) {
		n = n%1000 + 1
		if n < 3 {
			n = 3
		}
		checkClean(t, "sanitized", Sanitize(s, n), n)
	})
}

// blockingAuth blocks in Authenticate until released, as an OAuth2 token fetch from a hanging
// token endpoint does.
type blockingAuth struct {
	entered chan struct{}
	release chan struct{}
}

func (a *blockingAuth) Authenticate(req *http.Request) error {
	a.entered <- struct{}{}
	select {
	case <-a.release:
	case <-req.Context().Done():
		return req.Context().Err()
	}
	req.Header.Set("Authorization", "Bearer t")
	return nil
}

// holdingServer answers each request only when hang lets it go (or the client gives up); in
// receives one value per request that arrived, arrived counts them.
func holdingServer(t *testing.T, hang <-chan struct{}) (srv *httptest.Server, in <-chan struct{}, arrived *atomic.Int32) {
	t.Helper()
	arrivals := make(chan struct{}, 8)
	arrived = &atomic.Int32{}
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		arrivals <- struct{}{}
		select {
		case <-hang:
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, `{"id":"u1"}`)
	}))
	t.Cleanup(srv.Close)
	return srv, arrivals, arrived
}

func TestSlotsBoundRequestsInFlight(t *testing.T) {
	ctx := context.Background()
	hang := make(chan struct{})
	srv, in, arrived := holdingServer(t, hang)
	defer close(hang)
	slots := NewSlots(2, 50*time.Millisecond)
	c, _ := New(srv.URL, Options{Slots: slots, Timeout: 10 * time.Second})

	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { _, _ = c.Get(ctx, "Users", "u1") })
	}
	<-in
	<-in // both slots are taken by calls the target holds
	began := time.Now()
	_, err := c.Get(ctx, "Users", "u1")
	waited := time.Since(began)
	if !errors.Is(err, ErrTargetBusy) || !IsRetryable(err) {
		t.Fatalf("want a retryable ErrTargetBusy, got %v", err)
	}
	if d, ok := RetryAfter(err); !ok || d != BusyRetryAfter {
		t.Errorf("want Retry-After %s, got %s %v", BusyRetryAfter, d, ok)
	}
	if waited > 5*time.Second {
		t.Errorf("the busy call waited %s; it must fail fast (maxWait 50ms)", waited)
	}
	if arrived.Load() != 2 {
		t.Errorf("%d requests reached the target, want 2", arrived.Load())
	}
	hang <- struct{}{}
	hang <- struct{}{}
	wg.Wait()
	if slots.InFlight() != 0 {
		t.Errorf("%d slots still taken after the calls returned", slots.InFlight())
	}
}

func TestUrgentCallsHaveReservedSlots(t *testing.T) {
	ctx := context.Background()
	hang := make(chan struct{})
	srv, in, _ := holdingServer(t, hang)
	slots := NewSlots(4, 50*time.Millisecond) // 4 slots and 1 reserved
	if slots.Size() != 5 {
		t.Fatalf("Size %d, want 5", slots.Size())
	}
	c, _ := New(srv.URL, Options{Slots: slots, Timeout: 10 * time.Second})
	var wg sync.WaitGroup
	for range 4 { // ordinary calls hang in every ordinary slot
		wg.Go(func() { _, _ = c.Get(ctx, "Users", "u1") })
	}
	for range 4 {
		<-in
	}
	if _, err := c.Get(ctx, "Users", "u1"); !errors.Is(err, ErrTargetBusy) {
		t.Fatalf("an ordinary call: want ErrTargetBusy, got %v", err)
	}
	urgent := Urgent(ctx)
	wg.Go(func() {
		if _, err := c.Get(urgent, "Users", "u1"); err != nil {
			t.Errorf("the urgent call: %v", err)
		}
	})
	<-in // it reached the target through the reserved slot
	if _, err := c.Get(urgent, "Users", "u1"); !errors.Is(err, ErrTargetBusy) {
		t.Fatalf("a second urgent call: want ErrTargetBusy with the reserve taken, got %v", err)
	}
	close(hang)
	wg.Wait()
	if slots.InFlight() != 0 {
		t.Errorf("%d slots still taken", slots.InFlight())
	}
}

func TestSlotIsHeldWhileAuthenticating(t *testing.T) {
	ctx := context.Background()
	var arrived atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		_, _ = io.WriteString(w, `{"id":"u1"}`)
	}))
	defer srv.Close()
	auth := &blockingAuth{entered: make(chan struct{}, 8), release: make(chan struct{})}
	slots := NewSlots(1, 20*time.Millisecond)
	c, _ := New(srv.URL, Options{Slots: slots, Auth: auth})
	done := make(chan error, 1)
	go func() { _, err := c.Get(ctx, "Users", "u1"); done <- err }()
	<-auth.entered // the first call is fetching its token, holding the only slot
	if _, err := c.Get(ctx, "Users", "u1"); !errors.Is(err, ErrTargetBusy) {
		t.Fatalf("want ErrTargetBusy while the only slot authenticates, got %v", err)
	}
	if len(auth.entered) != 0 {
		t.Error("a second token fetch started without a slot")
	}
	close(auth.release)
	if err := <-done; err != nil {
		t.Fatalf("the first call: %v", err)
	}
	if arrived.Load() != 1 || slots.InFlight() != 0 {
		t.Errorf("arrived %d, in flight %d; want 1 and 0", arrived.Load(), slots.InFlight())
	}
}

func TestSlotsDoNotRefuseAHealthyBurst(t *testing.T) {
	ctx := context.Background()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond) // a healthy provider's few milliseconds
		_, _ = io.WriteString(w, `{"id":"u1"}`)
	}))
	defer srv.Close()
	burst := func(slots *Slots) (time.Duration, int) {
		c, _ := New(srv.URL, Options{Slots: slots})
		var busy atomic.Int32
		work := make(chan struct{}, 1000)
		for range 1000 {
			work <- struct{}{}
		}
		close(work)
		began := time.Now()
		var wg sync.WaitGroup
		for range 64 { // --max-concurrent-reconciles' default
			wg.Go(func() {
				for range work {
					if _, err := c.Get(ctx, "Users", "u1"); errors.Is(err, ErrTargetBusy) {
						busy.Add(1)
					} else if err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		return time.Since(began), int(busy.Load())
	}
	free, _ := burst(nil)
	gated, busy := burst(NewSlots(16, DefaultSlotWait)) // a quarter of 64 workers
	t.Logf("1,000 calls from 64 workers: %s without slots, %s with 16 slots", free, gated)
	if busy != 0 {
		t.Fatalf("%d of 1,000 calls to a healthy target were refused as busy", busy)
	}
}

// failingAuth fails as an OAuth2 token fetch from a token endpoint that never answers does.
type failingAuth struct{}

func (failingAuth) Authenticate(*http.Request) error {
	return errors.New("obtaining an OAuth2 token: the token endpoint timed out")
}

func TestBusyErrorsSayWhyTheTargetIsBusy(t *testing.T) {
	ctx := context.Background()
	srv := httptest.NewServer(http.HandlerFunc(scimUser))
	defer srv.Close()
	slots := NewSlots(1, 10*time.Millisecond)
	c, _ := New(srv.URL, Options{Slots: slots, Auth: failingAuth{}, MaxRetries: -1})
	if _, err := c.Get(ctx, "Users", "u1"); err == nil {
		t.Fatal("the authenticator fails")
	}
	release, err := slots.acquire(ctx, "GET /Users/held") // a call stuck in the only slot
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	_, err = c.Get(ctx, "Users", "u1")
	if !errors.Is(err, ErrTargetBusy) || !strings.Contains(err.Error(), "the token endpoint timed out") {
		t.Fatalf("want ErrTargetBusy saying why, got %v", err)
	}
}

func scimUser(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, `{"id":"u1"}`) }

// A queue behind a healthy target waits for as long as slots keep coming back: a burst
// longer than maxWait is served, not refused as busy.
func TestSlotsQueueBehindAHealthyTarget(t *testing.T) {
	s := NewSlots(1, 50*time.Millisecond)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := s.acquire(context.Background(), "GET /Users")
			if err != nil {
				errs <- err
				return
			}
			time.Sleep(20 * time.Millisecond) // the call itself: 8 x 20ms is well past maxWait
			release()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a call behind a moving queue failed: %v", err)
	}
}

// A body under the byte cap built of tiny values ({"a":0},...) is refused by its value count
// before it is decoded into maps.
func TestValueCapRefusesExpensiveBodies(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"Resources":[{"id":"x","a":[`)
	for i := range DefaultMaxValues {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"a":0}`)
	}
	b.WriteString(`]}]}`)
	if _, err := ParseListResponse([]byte(b.String())); !errors.Is(err, ErrLimitExceeded) {
		t.Fatalf("want ErrLimitExceeded, got %v", err)
	}
	if _, err := ParseResource([]byte(`{"id":"1","userName":"bot"}`)); err != nil {
		t.Fatalf("a small resource: %v", err)
	}
}

// A provider that answers every page just in time cannot hold one lookup for 500 page
// timeouts: the whole walk has a deadline of four calls.
func TestListWalkHasADeadline(t *testing.T) {
	var served atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := served.Add(1)
		select {
		case <-time.After(40 * time.Millisecond): // each page within the per-call timeout
		case <-r.Context().Done():
			return
		}
		_, _ = fmt.Fprintf(w, `{"totalResults":1000000,"Resources":[{"id":"u%d","userName":"u%d"}]}`, n, n)
	}))
	defer srv.Close()
	c, _ := New(srv.URL, Options{Timeout: 100 * time.Millisecond})
	began := time.Now()
	_, err := c.Find(context.Background(), "Users", "userName", "nobody")
	if err == nil {
		t.Fatal("the endless list was read to the end")
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Fatalf("the walk took %s; want about 4 x the 100ms timeout", d)
	}
}
