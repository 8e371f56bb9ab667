// Package plugin is kubectl scim: the operator's governance view and incident controls from a
// terminal. inventory lists identities with owner, targets, state, expiry and review due; why
// explains one identity's state; review records an attestation; revoke suspends an identity on
// every target and waits until the targets confirm it; plan shows what the operator would do on
// targets in Observe mode; import writes ServiceIdentities for a provider's existing accounts.
package plugin

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	eventsclient "k8s.io/client-go/kubernetes/typed/events/v1"

	scimv1 "github.com/nhi-dev/scim-operator/api/v1alpha1"
)

// FieldManager names the plugin in managedFields, so the audit trail of an identity shows
// which fields kubectl scim set.
const FieldManager = "kubectl-scim"

// identities is the resource of ServiceIdentities.
var identities = schema.GroupVersionResource{Group: scimv1.GroupVersion.Group, Version: scimv1.GroupVersion.Version, Resource: "serviceidentities"}

// Options are what every subcommand shares: the kubeconfig flags, the output streams and the
// clock.
type Options struct {
	ConfigFlags *ConfigFlags
	IOStreams
	// Now tells the time (time.Now when nil); tests fix it.
	Now func() time.Time
}

func (o *Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// clients builds the dynamic client (ServiceIdentities) and the typed one (Events) from the
// kubeconfig flags, and returns the namespace of -n or the kubeconfig's context.
func (o *Options) clients() (dynamic.Interface, eventsclient.EventsV1Interface, string, error) {
	cfg, err := o.ConfigFlags.ToRESTConfig()
	if err != nil {
		return nil, nil, "", err
	}
	ns, err := o.ConfigFlags.Namespace()
	if err != nil {
		return nil, nil, "", err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, nil, "", err
	}
	kube, err := eventsclient.NewForConfig(cfg)
	if err != nil {
		return nil, nil, "", err
	}
	return dyn, kube, ns, nil
}

// getIdentity reads one identity, with an error that names it when it does not exist.
func getIdentity(ctx context.Context, dyn dynamic.Interface, ns, name string) (*identity, error) {
	u, err := dyn.Resource(identities).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("serviceidentity %q not found in namespace %q", name, ns)
	}
	if err != nil {
		return nil, fmt.Errorf("reading serviceidentity %s/%s: %w", ns, name, err)
	}
	return decodeIdentity(u)
}

// NewCommand returns the kubectl scim command with its subcommands.
func NewCommand(streams IOStreams) *cobra.Command {
	return newCommand(&Options{ConfigFlags: NewConfigFlags(), IOStreams: streams})
}

func newCommand(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kubectl-scim",
		Short: "Governance and incident controls for scim-operator's ServiceIdentities",
		Long: `kubectl scim shows who owns each non-human identity, where it has accounts, and whether its
access is still justified; it records reviews and suspends an identity on every target at once.
To bring an application that already has accounts under the operator, plan shows what the
operator would do on a target in Observe mode, and import writes manifests for its accounts.`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl scim"},
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	cmd.SetIn(o.In)
	cmd.SetOut(o.Out)
	cmd.SetErr(o.ErrOut)
	o.ConfigFlags.AddFlags(cmd.PersistentFlags())
	cmd.AddCommand(newInventoryCommand(o), newWhyCommand(o), newReviewCommand(o), newRevokeCommand(o), newJWKSCommand(o),
		newPlanCommand(o), newImportCommand(o))
	return cmd
}
