//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	coordinationv1 "k8s.io/api/coordination/v1"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// The image is built offline (make docker-build BUILD_FROM=host: the binary compiled on this
// host, FROM scratch with the host's CA certificates; nothing is pulled) and run with podman
// through hack/podman.sh, in a storage root of this run's own that is removed afterwards.
var _ = Describe("The container image", Ordered, func() {
	const (
		image    = "localhost/scim-operator:e2e"
		version  = "v0.0.0-e2e"
		name     = "scim-operator-e2e"
		hostname = "scim-operator-from-image" // the Lease holder and the Events' reportingInstance name it
		mounted  = "/var/run/scim-operator/kubeconfig"
	)
	var storage string

	// podman runs hack/podman.sh on this run's storage root; stdout, stderr and the error.
	podman := func(args ...string) (string, string, error) {
		cmd := exec.Command(filepath.Join(root, "hack", "podman.sh"), args...)
		cmd.Env = append(os.Environ(), "PODMAN_ROOT="+storage)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	mustPodman := func(args ...string) string {
		GinkgoHelper()
		out, errOut, err := podman(args...)
		Expect(err).NotTo(HaveOccurred(), "podman %s: %s", strings.Join(args, " "), errOut)
		return out
	}

	BeforeAll(func() {
		storage = filepath.Join(workDir, "podman")
		ensure := exec.Command(filepath.Join(root, "hack", "podman.sh"), "--ensure")
		out, err := ensure.CombinedOutput()
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() == 3 {
			Skip("podman is needed to build and run the image: " + strings.TrimSpace(string(out)))
		}
		Expect(err).NotTo(HaveOccurred(), string(out))
		DeferCleanup(func() {
			_, _, _ = podman("rm", "--force", "--ignore", name)
			_, _, _ = podman("rmi", "--all", "--force")
			Expect(os.RemoveAll(storage)).To(Succeed())
		})

		By("building the image offline: make docker-build BUILD_FROM=host")
		start := time.Now()
		build := exec.Command("make", "--no-print-directory", "docker-build", "IMG="+image, "BUILD_FROM=host",
			"CONTAINER_TOOL=hack/podman.sh", "VERSION="+version,
			// A context of its own: the quick-start suite builds its image at the same time.
			"IMAGE_CONTEXT=bin/e2e")
		build.Dir = root
		build.Env = append(os.Environ(), "PODMAN_ROOT="+storage)
		out, err = build.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))
		took := time.Since(start)
		size, err := strconv.ParseInt(strings.TrimSpace(mustPodman("image", "inspect", image, "--format", "{{.Size}}")), 10, 64)
		Expect(err).NotTo(HaveOccurred())
		msg := fmt.Sprintf("container image: built in %s (make docker-build BUILD_FROM=host), %.1f MB", took.Round(100*time.Millisecond), float64(size)/1e6)
		fmt.Println(msg)
		AddReportEntry("container image", msg)
	})

	It("holds a static binary, run as 65532:65532, CA certificates, no shell, and prints its version", func() {
		Expect(strings.TrimSpace(mustPodman("image", "inspect", image, "--format", "{{.Config.User}} {{.Config.Entrypoint}}"))).
			To(Equal("65532:65532 [/manager]"))
		Expect(mustPodman("run", "--rm", "--network", "none", "--read-only", "--read-only-tmpfs=false",
			"--user", "65532:65532", "--cap-drop", "ALL", "--security-opt", "no-new-privileges", image, "--version")).
			To(Equal("scim-operator " + version + "\n"))

		_, errOut, err := podman("run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", image, "-c", "true")
		Expect(err).To(HaveOccurred(), "the image has no shell")
		Expect(errOut).To(ContainSubstring("/bin/sh"))

		mustPodman("create", "--name", name+"-files", image)
		DeferCleanup(func() { _, _, _ = podman("rm", "--force", "--ignore", name+"-files") })
		dir := filepath.Join(workDir, "image-files")
		Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
		for _, f := range []string{"/etc/ssl/certs/ca-certificates.crt", "/etc/passwd"} {
			mustPodman("cp", name+"-files:"+f, dir)
		}
		ca, err := os.ReadFile(filepath.Join(dir, "ca-certificates.crt"))
		Expect(err).NotTo(HaveOccurred())
		Expect(bytes.Count(ca, []byte("BEGIN CERTIFICATE"))).To(BeNumerically(">", 10))
		passwd, err := os.ReadFile(filepath.Join(dir, "passwd"))
		Expect(err).NotTo(HaveOccurred())
		Expect(string(passwd)).To(ContainSubstring(":65532:65532:"))
	})

	It("runs the operator against the control plane with its service account's token, and the samples become Ready", func() {
		ctx := context.Background()
		start := time.Now()
		// The kubeconfig holding the service account token, readable by 65532 in the container.
		kc, err := os.ReadFile(operator.kubeconfig)
		Expect(err).NotTo(HaveOccurred())
		kubeconfig := filepath.Join(workDir, "image.kubeconfig")
		Expect(os.WriteFile(kubeconfig, kc, 0o644)).To(Succeed()) // read by the container's user 65532

		By("stopping the operator that runs from the host binary (SIGTERM: it releases the leader lease)")
		operator.stop(syscall.SIGTERM)
		DeferCleanup(func() {
			By("stopping the container and starting the host operator again")
			_, _, _ = podman("stop", "--time", "30", name)
			if logs, errOut, err := podman("logs", name); err == nil {
				_ = os.WriteFile(filepath.Join(workDir, "operator-image.log"), []byte(logs+errOut), 0o600)
			}
			_, _, _ = podman("rm", "--force", "--ignore", name)
			operator.start()
		})

		By("running the image: read-only root filesystem, user 65532, no capabilities, no privilege escalation")
		args := append([]string{"run", "--detach", "--name", name, "--hostname", hostname, "--network", "host",
			"--read-only", "--read-only-tmpfs=false", "--user", "65532:65532", "--cap-drop", "ALL",
			"--security-opt", "no-new-privileges", "--volume", kubeconfig + ":" + mounted + ":ro", image},
			operatorArgs(mounted, metricsAddr)...)
		mustPodman(args...)
		containerLogs := func() string {
			out, errOut, _ := podman("logs", name)
			return out + errOut
		}

		By("the container takes the leader lease")
		Eventually(func(g Gomega) {
			lease := &coordinationv1.Lease{}
			g.Expect(k8s.Get(ctx, client.ObjectKey{Namespace: operatorNS, Name: "scim-operator.scim.nhi.dev"}, lease)).To(Succeed())
			g.Expect(lease.Spec.HolderIdentity).NotTo(BeNil())
			g.Expect(*lease.Spec.HolderIdentity).To(HavePrefix(hostname+"_"), containerLogs())
		}).Should(Succeed())
		Expect(containerLogs()).To(ContainSubstring(`"version":"` + version + `"`))

		By("applying config/samples: every story becomes Ready")
		kubectl("apply", "-k", filepath.Join(root, "config", "samples"))
		samples := []string{"billing-exporter", "serviceaccount-ledger-sync", "deployment-fraud-agent", "reporting-bot"}
		for _, n := range samples {
			Eventually(ready("payments", n)).Should(HavePrefix(isReady), n)
		}

		By("deleting and re-applying the identity of 02-identity.yaml: the container deprovisions and provisions it")
		kubectl("delete", "serviceidentity", "billing-exporter", "-n", "payments", "--wait=false")
		Eventually(goneIdentity("payments", "billing-exporter")).Should(BeTrue())
		Expect(accounts("payments", "billing-exporter")).To(BeEmpty())
		kubectl("apply", "-f", filepath.Join(root, "config", "samples", "02-identity.yaml"))
		Eventually(ready("payments", "billing-exporter")).Should(HavePrefix(isReady))
		Expect(accounts("payments", "billing-exporter")).To(HaveLen(1))

		By("the Events of that work name the container as their reporting instance")
		// (A new identity's first provisioning has no Event: its Ready condition says it.)
		for _, reason := range []string{"Deprovisioned"} {
			Eventually(func(g Gomega) []string {
				list := &eventsv1.EventList{}
				g.Expect(k8s.List(ctx, list, client.InNamespace("payments"))).To(Succeed())
				var by []string
				for _, e := range list.Items {
					if e.Regarding.Name == "billing-exporter" && e.Reason == reason && e.CreationTimestamp.After(start.Add(-time.Second)) {
						by = append(by, e.ReportingInstance)
					}
				}
				return by
			}).Should(ContainElement("scim-operator-"+hostname), reason)
		}

		By("the container serves its metrics over HTTPS to the metrics-reader token")
		token := metricsReaderToken()
		Eventually(func(g Gomega) {
			s, err := scrapeMetrics("https://"+metricsAddr+"/metrics", token)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(s.code).To(Equal(http.StatusOK), s.body)
			g.Expect(s.body).To(MatchRegexp(`(?m)^scim_operator_identities\{state="Ready"\} [1-9]\d*$`))
		}).Should(Succeed())

		msg := fmt.Sprintf("container image: operator from the image took the lease, provisioned the samples and re-provisioned billing-exporter in %s",
			time.Since(start).Round(100*time.Millisecond))
		fmt.Println(msg)
		AddReportEntry("container image run", msg)
	})
})
