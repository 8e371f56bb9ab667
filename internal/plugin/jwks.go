package plugin

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/nhi-dev/scim-operator/internal/secevent"
)

// newJWKSCommand prints the public key of the operator's Security Event Token signing key as a
// JWK Set (RFC 7517), for the receiver to verify the tokens with. It reads the key Secret with
// the user's own credentials and prints only the public part.
func newJWKSCommand(o *Options) *cobra.Command {
	return &cobra.Command{
		Use:   "jwks SECRET",
		Short: "Print the public JWK Set of the Security Event Token signing key (--security-events-key-secret)",
		Long: `jwks reads the Secret the operator signs Security Event Tokens with (the one named by
--security-events-key-secret, keys tls.key or key.pem and optionally kid) and prints its public
key as a JWK Set, the document a receiver verifies the tokens with. The private key is never
printed. Use -n for the Secret's namespace (the operator's namespace, usually
scim-operator-system).`,
		Example: `  kubectl scim jwks set-key -n scim-operator-system > jwks.json`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := o.ConfigFlags.ToRESTConfig()
			if err != nil {
				return err
			}
			ns, err := o.ConfigFlags.Namespace()
			if err != nil {
				return err
			}
			core, err := corev1client.NewForConfig(cfg)
			if err != nil {
				return err
			}
			s, err := core.Secrets(ns).Get(cmd.Context(), args[0], metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return fmt.Errorf("secret %q not found in namespace %q (the key Secret lives in the operator's namespace: -n)", args[0], ns)
			}
			if err != nil {
				return fmt.Errorf("reading secret %s/%s: %w", ns, args[0], err)
			}
			signer, err := secevent.SignerFromSecret(s)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(o.Out)
			enc.SetIndent("", "  ")
			return enc.Encode(signer.PublicJWKS())
		},
	}
}
