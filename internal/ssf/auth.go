package ssf

import (
	"context"
	"net/http"

	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/client-go/rest"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/kubeauth"
)

// Auth decides who may call the transmitter: the bearer token through TokenReview, the verb on
// securityeventstreams through SubjectAccessReview (internal/kubeauth), so RBAC decides.
type Auth struct {
	*kubeauth.Auth
}

// NewAuth builds Auth on the operator's API server connection.
func NewAuth(cfg *rest.Config, httpClient *http.Client) (*Auth, error) {
	a, err := kubeauth.New(cfg, httpClient)
	if err != nil {
		return nil, err
	}
	return &Auth{a}, nil
}

// access is one verb on securityeventstreams (a name, a subresource) in a namespace.
type access struct {
	verb, namespace, name, subresource string
}

// authorize reports whether u may do what; the status and message to answer with when not.
func (a *Auth) authorize(ctx context.Context, u user.Info, what access) (int, string) {
	return a.Authorize(ctx, authorizer.AttributesRecord{
		User: u, Verb: what.verb, Namespace: what.namespace, APIGroup: scimv1.GroupVersion.Group,
		APIVersion: scimv1.GroupVersion.Version, Resource: "securityeventstreams", Subresource: what.subresource,
		Name: what.name, ResourceRequest: true,
	})
}
