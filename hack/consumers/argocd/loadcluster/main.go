// Command loadcluster reads an Argo CD cluster Secret and does with it what Argo CD does:
// util/db.SecretToCluster turns the Secret into a v1alpha1.Cluster, and the Cluster's
// RESTConfig() is the rest.Config Argo CD's cluster cache and controllers connect with.
// With that config it lists the namespaces of the cluster the Secret points at and prints
// {"name", "server", "namespaces"} as JSON.
//
//	loadcluster -kubeconfig FILE -namespace NS -secret NAME   # the Secret from an API server
//	loadcluster -file FILE                                     # the Secret as JSON or YAML
//
// It refuses a Secret without the label Argo CD selects cluster Secrets by
// (argocd.argoproj.io/secret-type=cluster), as Argo CD would not see it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/argoproj/argo-cd/v3/common"
	"github.com/argoproj/argo-cd/v3/util/db"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

type result struct {
	Name       string   `json:"name"`
	Server     string   `json:"server"`
	Namespaces []string `json:"namespaces"`
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster holding the Secret")
	namespace := flag.String("namespace", "", "namespace of the Secret")
	name := flag.String("secret", "", "name of the Secret")
	file := flag.String("file", "", "read the Secret from this JSON or YAML file instead")
	timeout := flag.Duration("timeout", 30*time.Second, "overall timeout")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	out, err := run(ctx, *kubeconfig, *namespace, *name, *file)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadcluster:", err)
		os.Exit(1)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "loadcluster:", err)
		os.Exit(1)
	}
}

func readSecret(ctx context.Context, kubeconfig, namespace, name, file string) (*corev1.Secret, error) {
	if file != "" {
		raw, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		var s corev1.Secret
		if err := yaml.UnmarshalStrict(raw, &s); err != nil {
			return nil, fmt.Errorf("parsing %s: %w", file, err)
		}
		return &s, nil
	}
	if kubeconfig == "" || namespace == "" || name == "" {
		return nil, errors.New("give -file, or -kubeconfig, -namespace and -secret")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return client.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
}

func run(ctx context.Context, kubeconfig, namespace, name, file string) (*result, error) {
	secret, err := readSecret(ctx, kubeconfig, namespace, name, file)
	if err != nil {
		return nil, err
	}
	if got := secret.Labels[common.LabelKeySecretType]; got != common.LabelValueSecretTypeCluster {
		return nil, fmt.Errorf("secret %s/%s: label %s is %q, not %q: Argo CD does not read it",
			secret.Namespace, secret.Name, common.LabelKeySecretType, got, common.LabelValueSecretTypeCluster)
	}
	cluster, err := db.SecretToCluster(secret)
	if err != nil {
		return nil, fmt.Errorf("SecretToCluster: %w", err)
	}
	restConfig, err := cluster.RESTConfig()
	if err != nil {
		return nil, fmt.Errorf("Cluster.RESTConfig: %w", err)
	}
	clientset, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return nil, err
	}
	list, err := clientset.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing namespaces of %s: %w", cluster.Server, err)
	}
	names := make([]string, 0, len(list.Items))
	for _, ns := range list.Items {
		names = append(names, ns.Name)
	}
	sort.Strings(names)
	return &result{Name: cluster.Name, Server: cluster.Server, Namespaces: names}, nil
}
