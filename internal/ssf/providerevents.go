package ssf

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
	"github.com/nhi-dev/scim-operator/internal/secevent"
	"github.com/nhi-dev/scim-operator/internal/status"
	"github.com/nhi-dev/scim-operator/internal/targets"
)

// maxJWKSBytes and maxJWKSKeys bound a target's JWK Set: verifying costs what it holds.
const (
	maxJWKSBytes = 64 << 10
	maxJWKSKeys  = 16
)

// provEventPrefix begins the RFC 9967 provisioning events (create, patch, put, delete,
// activate, deactivate, with their :full and :notice forms).
const provEventPrefix = "urn:ietf:params:scim:event:prov:"

// signatureAlgorithms are those a provider's tokens may be signed with.
var signatureAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}

// providerEvents receives a target's SCIM events (RFC 9967) pushed by its provider (RFC 8935):
// the bearer token the target names, a token signed by a key of the JWK Set it names, with its
// issuer and, as audience, this endpoint's URL. Each provisioning event about an account of an
// identity on the target flags that account (targets.SweepFlags): the identity's next pass, at
// once, reads it and corrects it, or revokes it again. It answers 202 to a token it accepted,
// whether or not an identity holds the account (the provider need not know), and RFC 8935's 400
// {"err", "description"} to one it refuses.
func (s *Server) providerEvents(w http.ResponseWriter, r *http.Request) {
	kind, ns, name := scimv1.KindClusterScimTarget, "", r.PathValue("name")
	if r.PathValue("ns") != "" {
		kind, ns = scimv1.KindScimTarget, r.PathValue("ns")
	}
	// Before the caller is authenticated, every failure reads the same: a 401 tells nothing of
	// which targets exist or take events, or how they are configured.
	unauthorized := func() {
		w.Header().Set("WWW-Authenticate", `Bearer realm="scim-operator"`)
		writeError(w, http.StatusUnauthorized, secevent.ErrCodeAuthenticationFailed, "the bearer token is not the target's")
	}
	t := s.eventTarget(r.Context(), kind, ns, name)
	if t == nil {
		unauthorized()
		return
	}
	token, err := s.secretValue(r.Context(), t.SecretNamespace, t.Spec.Events.TokenSecretRef)
	if err != nil {
		logf.FromContext(r.Context()).V(1).Info("A target's events token cannot be read", "target", t.Key(), "error", err.Error())
		unauthorized()
		return
	}
	got, found := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !found || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
		unauthorized()
		return
	}
	// Flags are read by the leader's identity controller only: a replica that does not lead
	// asks the provider to send the token again (RFC 8935 transmitters retry a 503), which the
	// Service may then route to the leader.
	if !s.leading() {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "", "this replica does not lead; send the token again")
		return
	}
	s.init()
	if !allow(s.targetEvents, t.Key(), 0, DefaultTargetEventRate) {
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusTooManyRequests, "", "too many events for this target")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	if err != nil {
		writeError(w, http.StatusBadRequest, secevent.ErrCodeInvalidRequest, "the body is too large")
		return
	}
	claims, code, msg := s.verifyProviderToken(r, t, body)
	if code != "" {
		writeError(w, http.StatusBadRequest, code, msg)
		return
	}
	flagged := s.flagAccount(r.Context(), t, claims)
	logf.FromContext(r.Context()).V(1).Info("SCIM event received", "target", t.Key(), "jti", truncate(claims.JTI, 64), "flagged", flagged)
	w.WriteHeader(http.StatusAccepted)
}

// DefaultTargetEventRate bounds the events per second one target's provider pushes (twice
// that in a burst): each may cost a reconcile and a SCIM read.
const DefaultTargetEventRate = 20

// leading reports whether this replica leads (always, without leader election).
func (s *Server) leading() bool {
	if s.Elected == nil {
		return true
	}
	select {
	case <-s.Elected:
		return true
	default:
		return false
	}
}

// eventTarget is the target a push names, when it takes events (nil otherwise).
func (s *Server) eventTarget(ctx context.Context, kind, ns, name string) *targets.Target {
	if len(validation.IsDNS1123Subdomain(name)) > 0 || ns != "" && len(validation.IsDNS1123Label(ns)) > 0 {
		return nil
	}
	var obj client.Object = &scimv1.ClusterScimTarget{}
	if kind == scimv1.KindScimTarget {
		obj = &scimv1.ScimTarget{}
	}
	if err := s.Client.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, obj); err != nil {
		return nil // not found, or a namespace this operator does not watch
	}
	t := targets.OfObject(obj, s.OperatorNamespace)
	if t == nil || t.Spec.Events == nil {
		return nil
	}
	return t
}

// secretTTL is how long a Secret read for a provider's push is used before it is read again:
// a provider pushing many events costs the API server one read per Secret per secretTTL, and
// a Secret that cannot be read one failed read.
const secretTTL = 10 * time.Second

type cachedSecret struct {
	value string
	err   error
	at    time.Time
}

// secretValue reads one key of a Secret in namespace (from the API server: Secrets are never
// in the manager's cache), kept for secretTTL, failures too.
func (s *Server) secretValue(ctx context.Context, namespace string, ref scimv1.SecretKeySelector) (string, error) {
	s.init()
	key := namespace + "/" + ref.Name + "/" + ref.Key
	now := status.Clock(s.Clock).Now()
	if c, ok := s.secrets.Get(key); ok && now.Sub(c.(cachedSecret).at) < secretTTL {
		return c.(cachedSecret).value, c.(cachedSecret).err
	}
	var sec corev1.Secret
	err := s.APIReader.Get(ctx, types.NamespacedName{Namespace: namespace, Name: ref.Name}, &sec)
	v := strings.TrimSpace(string(sec.Data[ref.Key]))
	if err == nil && v == "" {
		err = fmt.Errorf("secret %s/%s has no %q", namespace, ref.Name, ref.Key)
	}
	if err != nil {
		v = ""
	}
	s.secrets.Add(key, cachedSecret{value: v, err: err, at: now})
	return v, err
}

// providerClaims are the claims of a provider's token the operator reads.
type providerClaims struct {
	Issuer   string                     `json:"iss"`
	JTI      string                     `json:"jti"`
	Audience Audience                   `json:"aud"`
	Subject  map[string]any             `json:"sub_id"`
	Events   map[string]json.RawMessage `json:"events"`
}

// verifyProviderToken checks body as a Security Event Token of t's provider; on refusal it
// returns RFC 8935's error code and a description.
func (s *Server) verifyProviderToken(r *http.Request, t *targets.Target, body []byte) (providerClaims, string, string) {
	var c providerClaims
	raw, err := s.secretValue(r.Context(), t.SecretNamespace, t.Spec.Events.JWKSSecretRef)
	if err != nil {
		return c, secevent.ErrCodeInvalidKey, "the target's JWK Set could not be read"
	}
	var keys jose.JSONWebKeySet
	if len(raw) > maxJWKSBytes || json.Unmarshal([]byte(raw), &keys) != nil || len(keys.Keys) > maxJWKSKeys {
		return c, secevent.ErrCodeInvalidKey, fmt.Sprintf("the target's JWK Set is not one of at most %d keys", maxJWKSKeys)
	}
	jws, err := jose.ParseSignedCompact(strings.TrimSpace(string(body)), signatureAlgorithms)
	if err != nil || len(jws.Signatures) != 1 {
		return c, secevent.ErrCodeInvalidRequest, "the body is not one signed token (compact JWS)"
	}
	hdr := jws.Signatures[0].Protected
	if typ, _ := hdr.ExtraHeaders[jose.HeaderType].(string); !strings.EqualFold(typ, secevent.MediaType) {
		return c, secevent.ErrCodeInvalidRequest, "the token's typ is not secevent+jwt"
	}
	// One key per kid, one verification per token.
	matches := keys.Key(hdr.KeyID)
	if len(matches) != 1 {
		return c, secevent.ErrCodeInvalidKey, "the target's JWK Set has no single key with the token's kid"
	}
	payload, err := jws.Verify(matches[0].Public())
	if err != nil {
		return c, secevent.ErrCodeInvalidKey, "the key with the token's kid does not verify it"
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return c, secevent.ErrCodeInvalidRequest, "the token's claims are not JSON"
	}
	if c.Issuer != t.Spec.Events.Issuer {
		return c, secevent.ErrCodeInvalidIssuer, "the token's iss is not the target's events issuer"
	}
	if self := issuerOf(s.Issuer, "") + r.URL.EscapedPath(); !slices.Contains(c.Audience, self) {
		return c, secevent.ErrCodeInvalidAudience, "the token's aud is not this endpoint, " + self
	}
	return c, "", ""
}

// flagAccount flags, for the identities holding it, the account on t a provisioning event is
// about; it reports how many identities it flagged.
func (s *Server) flagAccount(ctx context.Context, t *targets.Target, c providerClaims) int {
	prov := false
	for typ := range c.Events {
		prov = prov || strings.HasPrefix(typ, provEventPrefix)
	}
	id := accountID(c.Subject)
	if !prov || id == "" {
		return 0
	}
	list, err := targets.Identities(ctx, s.Client, t.Kind, t.Namespace, t.Name)
	if err != nil {
		logf.FromContext(ctx).Error(err, "Listing the identities of a target for its event", "target", t.Key())
		return 0
	}
	n := 0
	for i := range list.Items {
		si := &list.Items[i]
		for _, e := range si.Status.Targets {
			if e.ID == id && targets.Key(e.Kind, si.Namespace, e.Name) == t.Key() {
				fctx, cancel := context.WithTimeout(ctx, time.Second) // the wake is a hint: the flag stays
				s.Flags.Flag(fctx, si, t.Key())
				cancel()
				n++
			}
		}
	}
	return n
}

// accountID is the id a scim subject (RFC 9967: uri "/Users/<id>", relative to the service's
// base; an absolute one is taken too) names.
func accountID(sub map[string]any) string {
	if f, _ := sub["format"].(string); f != "scim" {
		return ""
	}
	uri, _ := sub["uri"].(string)
	u, err := url.Parse(uri)
	if err != nil {
		return ""
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) < 2 || parts[len(parts)-1] == "" || parts[len(parts)-2] != "Users" && parts[len(parts)-2] != "Agents" {
		return ""
	}
	return parts[len(parts)-1]
}
