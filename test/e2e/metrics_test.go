//go:build e2e

package e2e

import (
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// scrape is one GET of the operator's metrics endpoint.
type scrape struct {
	code  int
	body  string
	proto string
}

// scrapeMetrics GETs url with a bearer token ("" sends none), over a client that offers HTTP/2
// and accepts the operator's self-signed certificate.
func scrapeMetrics(url, token string) (scrape, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // the operator's certificate is self-signed (no --metrics-cert-path)
		ForceAttemptHTTP2: true,
	}}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return scrape{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return scrape{}, err
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	return scrape{code: resp.StatusCode, body: string(b), proto: resp.Proto}, err
}

// metricsReaderToken returns a token of a service account bound to the shipped metrics-reader
// ClusterRole, as a Prometheus would have; created once per suite.
func metricsReaderToken() string {
	GinkgoHelper()
	if !metricsRBACDone {
		kubectl("create", "namespace", "monitoring")
		kubectl("create", "serviceaccount", "prometheus", "-n", "monitoring")
		kubectl("create", "serviceaccount", "nosy", "-n", "monitoring")
		kubectl("create", "clusterrolebinding", "monitoring-prometheus-scim-operator-metrics",
			"--clusterrole", "scim-operator-metrics-reader", "--serviceaccount", "monitoring:prometheus")
		metricsRBACDone = true
	}
	return strings.TrimSpace(kubectl("create", "token", "prometheus", "-n", "monitoring"))
}

var metricsRBACDone bool

var _ = Describe("The metrics endpoint", func() {
	url := "https://" + metricsAddr + "/metrics"

	It("serves the operator's metrics over HTTPS to a token the metrics-reader ClusterRole allows", func() {
		token := metricsReaderToken()
		var s scrape
		// The operator serves metrics as soon as it starts, but its controllers' only once it holds
		// the leader lease (a spec before this one may just have restarted it).
		Eventually(func(g Gomega) {
			var err error
			s, err = scrapeMetrics(url, token)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(s.code).To(Equal(http.StatusOK), s.body)
			g.Expect(s.body).To(ContainSubstring("controller_runtime_reconcile_total"))
		}).Should(Succeed())
		Expect(s.body).To(MatchRegexp(`(?m)^scim_operator_identities\{state="Ready"\} \d+$`))
		// config/default installs the policies --creation-stamps-guarded relies on, and the
		// operator's RBAC lets it see them.
		Expect(s.body).To(MatchRegexp(`(?m)^scim_operator_creation_stamps_guarded 1$`))
		Expect(s.proto).To(Equal("HTTP/1.1"), "HTTP/2 is off unless --enable-http2")
	})

	It("refuses a token without that role (403), no token (401) and a token the API server rejects", func() {
		metricsReaderToken()
		nosy := strings.TrimSpace(kubectl("create", "token", "nosy", "-n", "monitoring"))
		for _, c := range []struct {
			who, token string
			codes      []int
		}{
			{"a service account without the metrics-reader role", nosy, []int{http.StatusForbidden}},
			{"no token", "", []int{http.StatusUnauthorized}},
			// controller-runtime's filter answered 500 "Authentication failed" (and logged an error
			// per scrape) when the TokenReview carries an error, as it does for a token that is not
			// a valid JWT; internal/kubeauth answers 401.
			{"a token the API server rejects", "not-a-token", []int{http.StatusUnauthorized}},
		} {
			Eventually(func(g Gomega) {
				s, err := scrapeMetrics(url, c.token)
				g.Expect(err).NotTo(HaveOccurred())
				g.Expect(s.code).To(BeElementOf(c.codes), c.who)
				g.Expect(s.body).NotTo(ContainSubstring("scim_operator_"), c.who)
			}).Should(Succeed())
		}
	})

	It("does not serve plain HTTP", func() {
		Eventually(func(g Gomega) {
			s, err := scrapeMetrics("http://"+metricsAddr+"/metrics", "")
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(s.code).To(Equal(http.StatusBadRequest))
			g.Expect(s.body).To(ContainSubstring("HTTP request to an HTTPS server"))
		}).Should(Succeed())
	})
})
