package scimserver

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// benchServer is a reference server holding n accounts of one cluster (externalId prefix c1/).
func benchServer(b *testing.B, n int) *Server {
	b.Helper()
	s, err := New("t")
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Stop)
	for i := range n {
		s.Users.Put(map[string]any{"userName": fmt.Sprintf("bot-%05d.ns", i), "externalId": fmt.Sprintf("c1/ns/bot-%05d", i), "active": true})
	}
	return s
}

func benchGet(b *testing.B, s *Server, query string) {
	b.Helper()
	benchDo(b, s, http.MethodGet, "/Users?"+query, "", http.StatusOK)
}

// benchDo sends one request and reads its answer, which must have status want.
func benchDo(b *testing.B, s *Server, method, path, body string, want int) {
	b.Helper()
	req, _ := http.NewRequest(method, s.Endpoint()+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer t")
	if body != "" {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != want {
		b.Fatal(resp.Status)
	}
}

// BenchmarkSweep lists 10,000 accounts of the cluster, 200 a page, as a sweep does.
func BenchmarkSweep(b *testing.B) {
	const n, page = 10000, 200
	s := benchServer(b, n)
	q := url.Values{"filter": {`externalId sw "c1/"`}, "count": {fmt.Sprint(page)}}
	b.ResetTimer()
	for range b.N {
		for start := 1; start <= n; start += page {
			q.Set("startIndex", fmt.Sprint(start))
			benchGet(b, s, q.Encode())
		}
	}
}

// BenchmarkLookup finds one account of 10,000 by externalId, as provisioning and revocation do.
func BenchmarkLookup(b *testing.B) {
	s := benchServer(b, 10000)
	q := url.Values{"filter": {`externalId eq "c1/ns/bot-05000"`}}.Encode()
	b.ResetTimer()
	for range b.N {
		benchGet(b, s, q)
	}
}

// BenchmarkCreate POSTs a new account to a server that holds 10,000, as provisioning does.
func BenchmarkCreate(b *testing.B) {
	s := benchServer(b, 10000)
	b.ResetTimer()
	for i := range b.N {
		body := fmt.Sprintf(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"new-%d.ns","externalId":"c1/ns/new-%d"}`, i, i)
		benchDo(b, s, http.MethodPost, "/Users", body, http.StatusCreated)
	}
}
