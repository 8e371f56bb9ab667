package ssf

import (
	"context"
	"fmt"
	"net/http"
	"time"

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

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

// Auth decides who may call the transmitter: the bearer token through TokenReview, the verb on
// securityeventstreams through SubjectAccessReview, both cached briefly (as the API server's
// own delegated authentication does), so RBAC decides.
type Auth struct {
	authn authenticator.Request
	authz authorizer.Authorizer
}

// NewAuth builds Auth on the operator's API server connection.
func NewAuth(cfg *rest.Config, httpClient *http.Client) (*Auth, error) {
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

// access is one verb on securityeventstreams (a name, a subresource) in a namespace.
type access struct {
	verb, namespace, name, subresource string
}

// authenticate returns the caller, or the HTTP status and message to answer with.
func (a *Auth) authenticate(r *http.Request) (user.Info, int, string) {
	res, ok, err := a.authn.AuthenticateRequest(r)
	switch {
	case err != nil && !ok:
		// An invalid or expired token is an authentication failure, not a server error.
		return nil, http.StatusUnauthorized, "the bearer token was not accepted"
	case !ok:
		return nil, http.StatusUnauthorized, "a bearer token is required"
	}
	return res.User, 0, ""
}

// authorize reports whether u may do what; the status and message to answer with when not.
func (a *Auth) authorize(ctx context.Context, u user.Info, what access) (int, string) {
	decision, _, err := a.authz.Authorize(ctx, authorizer.AttributesRecord{
		User: u, Verb: what.verb, Namespace: what.namespace, APIGroup: scimv1.GroupVersion.Group,
		APIVersion: scimv1.GroupVersion.Version, Resource: "securityeventstreams", Subresource: what.subresource,
		Name: what.name, ResourceRequest: true,
	})
	if err != nil {
		return http.StatusServiceUnavailable, "authorization could not be checked; try again"
	}
	if decision != authorizer.DecisionAllow {
		res := "securityeventstreams"
		if what.subresource != "" {
			res += "/" + what.subresource
		}
		return http.StatusForbidden, fmt.Sprintf("%s may not %s %s in namespace %s", u.GetName(), what.verb, res, what.namespace)
	}
	return 0, ""
}
