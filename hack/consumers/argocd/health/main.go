// Command health judges objects the way Argo CD's application controller does: it reads the
// resource customizations from an argocd-cm ConfigMap with Argo CD's own settings code
// (util/settings.SettingsManager.GetResourceOverrides, from the API server, as Argo CD does),
// and gives each object to gitops-engine's health.GetResourceHealth with those overrides
// (util/lua.ResourceHealthOverrides), as controller/health.go does for an Application's
// resources. It prints one JSON line per object: {"kind", "namespace", "name", "status",
// "message"}.
//
//	health -kubeconfig FILE -argocd-namespace NS [-namespace NS] RESOURCE/NAME...
//	health -kubeconfig FILE -argocd-namespace NS -file OBJECTS.json
//
// RESOURCE is a moons.kingdon.ci/v1alpha1 resource (landings, landingsets, landingpolicies),
// read from the same API server (-namespace for the namespaced ones). -file holds objects as
// JSON or YAML (one object, or a List). An object without a health check is an error: Argo CD
// would show it as healthy only because nothing judges it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/argoproj/argo-cd/gitops-engine/v3/pkg/health"
	"github.com/argoproj/argo-cd/v3/util/lua"
	"github.com/argoproj/argo-cd/v3/util/settings"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

const group, version = "moons.kingdon.ci", "v1alpha1"

type result struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster holding argocd-cm (and the objects)")
	argoNamespace := flag.String("argocd-namespace", "argocd", "namespace of the argocd-cm ConfigMap")
	namespace := flag.String("namespace", "", "namespace of the namespaced objects named as arguments")
	file := flag.String("file", "", "judge the objects in this JSON or YAML file (one, or a List)")
	timeout := flag.Duration("timeout", 30*time.Second, "overall timeout")
	flag.Parse()

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	results, err := run(ctx, *kubeconfig, *argoNamespace, *namespace, *file, flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "health:", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	for _, r := range results {
		if err := enc.Encode(r); err != nil {
			fmt.Fprintln(os.Stderr, "health:", err)
			os.Exit(1)
		}
	}
}

func run(ctx context.Context, kubeconfig, argoNamespace, namespace, file string, names []string) ([]result, error) {
	if kubeconfig == "" {
		return nil, errors.New("give -kubeconfig: argocd-cm is read from the API server")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	overrides, err := settings.NewSettingsManager(ctx, clientset, argoNamespace).GetResourceOverrides()
	if err != nil {
		return nil, fmt.Errorf("GetResourceOverrides: %w", err)
	}
	var objects []*unstructured.Unstructured
	if file != "" {
		if objects, err = readFile(file); err != nil {
			return nil, err
		}
	}
	if len(names) > 0 {
		client, err := dynamic.NewForConfig(cfg)
		if err != nil {
			return nil, err
		}
		for _, arg := range names {
			resource, name, ok := strings.Cut(arg, "/")
			if !ok || name == "" {
				return nil, fmt.Errorf("%q: give RESOURCE/NAME", arg)
			}
			gvr := schema.GroupVersionResource{Group: group, Version: version, Resource: resource}
			var obj *unstructured.Unstructured
			if resource == "landingpolicies" {
				obj, err = client.Resource(gvr).Get(ctx, name, metav1.GetOptions{})
			} else {
				obj, err = client.Resource(gvr).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
			}
			if err != nil {
				return nil, err
			}
			objects = append(objects, obj)
		}
	}
	if len(objects) == 0 {
		return nil, errors.New("no objects: give RESOURCE/NAME arguments or -file")
	}
	judge := lua.ResourceHealthOverrides(overrides)
	results := make([]result, 0, len(objects))
	for _, obj := range objects {
		script, _, err := (lua.VM{ResourceOverrides: overrides}).GetHealthScript(obj)
		if err != nil {
			return nil, err
		}
		if script == "" {
			return nil, fmt.Errorf("%s %s: no health check in argocd-cm (key %s)",
				obj.GetKind(), obj.GetName(), lua.GetConfigMapKey(obj.GroupVersionKind()))
		}
		status, err := health.GetResourceHealth(obj, judge)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		if status == nil {
			return nil, fmt.Errorf("%s %s: no health status", obj.GetKind(), obj.GetName())
		}
		results = append(results, result{
			Kind: obj.GetKind(), Namespace: obj.GetNamespace(), Name: obj.GetName(),
			Status: string(status.Status), Message: status.Message,
		})
	}
	return results, nil
}

func readFile(path string) ([]*unstructured.Unstructured, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	obj := &unstructured.Unstructured{Object: doc}
	if !obj.IsList() {
		return []*unstructured.Unstructured{obj}, nil
	}
	list, err := obj.ToList()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	objects := make([]*unstructured.Unstructured, 0, len(list.Items))
	for i := range list.Items {
		objects = append(objects, &list.Items[i])
	}
	return objects, nil
}
