// Package kubeauth decides who may call the operator's HTTP endpoints (the metrics endpoint, the
// Shared Signals transmitter): the bearer token through TokenReview, the request through
// SubjectAccessReview, both cached briefly, with the API server's own delegating authenticator
// and authorizer, so RBAC decides. Unlike controller-runtime's metrics filter, a token the API
// server refuses is a 401, not a 500 with an error logged on every scrape.
package kubeauth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	authenticationv1 "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationv1 "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// Auth authenticates and authorises callers.
type Auth struct {
	authn authenticator.Request
	authz authorizer.Authorizer
}

// New builds Auth on the operator's API server connection.
func New(cfg *rest.Config, httpClient *http.Client) (*Auth, error) {
	tr, err := authenticationv1.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	sar, err := authorizationv1.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	backoff := &wait.Backoff{Duration: 500 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 5}
	authn, _, err := authenticatorfactory.DelegatingAuthenticatorConfig{
		Anonymous:                &apiserver.AnonymousAuthConfig{Enabled: false},
		CacheTTL:                 10 * time.Second,
		TokenAccessReviewClient:  tr,
		TokenAccessReviewTimeout: 10 * time.Second,
		WebhookRetryBackoff:      backoff,
	}.New()
	if err != nil {
		return nil, fmt.Errorf("creating the authenticator: %w", err)
	}
	// A grant taken away stops working within AllowCacheTTL.
	authz, err := authorizerfactory.DelegatingAuthorizerConfig{
		SubjectAccessReviewClient: sar,
		AllowCacheTTL:             10 * time.Second,
		DenyCacheTTL:              5 * time.Second,
		WebhookRetryBackoff:       backoff,
	}.New()
	if err != nil {
		return nil, fmt.Errorf("creating the authorizer: %w", err)
	}
	return &Auth{authn: authn, authz: authz}, nil
}

// Authenticate returns the caller, or the HTTP status and message to answer with.
func (a *Auth) Authenticate(r *http.Request) (user.Info, int, string) {
	res, ok, err := a.authn.AuthenticateRequest(r)
	switch {
	case err != nil && reviewFailed(err):
		// The API server could not be asked (down, throttling, the operator's RBAC): not the
		// caller's fault, and not a verdict on the token.
		return nil, http.StatusServiceUnavailable, "authentication could not be checked; try again"
	case err != nil && !ok:
		// An invalid or expired token is an authentication failure, not a server error.
		return nil, http.StatusUnauthorized, "the bearer token was not accepted"
	case !ok:
		return nil, http.StatusUnauthorized, "a bearer token is required"
	}
	return res.User, 0, ""
}

// Authorize returns 0 when attrs are allowed, else the HTTP status and message to answer with:
// 403 saying who may not do what, 503 when the API server could not say.
func (a *Auth) Authorize(ctx context.Context, attrs authorizer.Attributes) (int, string) {
	decision, _, err := a.authz.Authorize(ctx, attrs)
	switch {
	case err != nil:
		return http.StatusServiceUnavailable, "authorization could not be checked; try again"
	case decision != authorizer.DecisionAllow:
		return http.StatusForbidden, refusal(attrs)
	}
	return 0, ""
}

// refusal says who may not do what: "<user> may not <verb> <path>", or for a resource
// "<user> may not <verb> <resource>[/<subresource>] in namespace <ns>".
func refusal(attrs authorizer.Attributes) string {
	if !attrs.IsResourceRequest() {
		return fmt.Sprintf("%s may not %s %s", attrs.GetUser().GetName(), attrs.GetVerb(), attrs.GetPath())
	}
	res := attrs.GetResource()
	if sub := attrs.GetSubresource(); sub != "" {
		res += "/" + sub
	}
	return fmt.Sprintf("%s may not %s %s in namespace %s", attrs.GetUser().GetName(), attrs.GetVerb(), res, attrs.GetNamespace())
}

// MetricsFilter is a metricsserver.Options.FilterProvider: the caller must be allowed the
// request's verb on its path (get /metrics: the metrics-reader ClusterRole).
func MetricsFilter(cfg *rest.Config, httpClient *http.Client) (metricsserver.Filter, error) {
	a, err := New(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	return func(log logr.Logger, next http.Handler) (http.Handler, error) {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, code, msg := a.Authenticate(r)
			if code != 0 {
				http.Error(w, msg, code)
				return
			}
			code, msg = a.Authorize(r.Context(), authorizer.AttributesRecord{User: u, Verb: strings.ToLower(r.Method), Path: r.URL.Path})
			if code != 0 {
				log.V(4).Info("metrics request refused", "code", code, "reason", msg)
				http.Error(w, msg, code)
				return
			}
			next.ServeHTTP(w, r)
		}), nil
	}, nil
}

// reviewFailed tells a TokenReview that could not be made (the API server down or throttling,
// the operator's RBAC) from a token the API server reviewed and refused: the authenticator
// reports both as errors, the first as the client's error (an API status, a network or
// context error), the second as the review's own message.
func reviewFailed(err error) bool {
	var agg utilerrors.Aggregate
	if errors.As(err, &agg) {
		return slices.ContainsFunc(agg.Errors(), reviewFailed)
	}
	var status apierrors.APIStatus
	var netErr net.Error
	return errors.As(err, &status) || errors.As(err, &netErr) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}
