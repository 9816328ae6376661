// Command function-remote-configmap is the composition function of the Crossplane demo
// (moonlander-dev demo --crossplane). For a RemoteConfigMap XR it composes one provider-kubernetes
// Object (kubernetes.m.crossplane.io, Crossplane v2's namespaced managed resource) holding a
// ConfigMap with the XR's data, in the cluster the XR names: spec.cluster is the
// ClusterProviderConfig that a Moonlander Landing wrote next to the landed kubeconfig.
// The Object is ready when provider-kubernetes reports it Ready; so is the XR.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/crossplane/function-sdk-go"
	"github.com/crossplane/function-sdk-go/errors"
	fnv1 "github.com/crossplane/function-sdk-go/proto/v1"
	"github.com/crossplane/function-sdk-go/request"
	"github.com/crossplane/function-sdk-go/resource"
	"github.com/crossplane/function-sdk-go/resource/composed"
	"github.com/crossplane/function-sdk-go/response"
)

const objectName resource.Name = "configmap"

type fn struct {
	fnv1.UnimplementedFunctionRunnerServiceServer
}

func (fn) RunFunction(_ context.Context, req *fnv1.RunFunctionRequest) (*fnv1.RunFunctionResponse, error) {
	rsp := response.To(req, response.DefaultTTL)
	xr, err := request.GetObservedCompositeResource(req)
	if err != nil {
		response.Fatal(rsp, errors.Wrap(err, "cannot get the observed XR"))
		return rsp, nil
	}
	cluster, err := xr.Resource.GetString("spec.cluster")
	if err != nil || cluster == "" {
		response.Fatal(rsp, errors.New("spec.cluster (the target's ClusterProviderConfig) is required"))
		return rsp, nil
	}
	namespace, err := xr.Resource.GetString("spec.namespace")
	if err != nil || namespace == "" {
		namespace = "default"
	}
	data, err := xr.Resource.GetStringObject("spec.data")
	if err != nil {
		data = map[string]string{}
	}
	payload := map[string]any{}
	for k, v := range data {
		payload[k] = v
	}

	obj := composed.New()
	obj.SetAPIVersion("kubernetes.m.crossplane.io/v1alpha1")
	obj.SetKind("Object")
	if err := obj.SetValue("spec", map[string]any{
		"providerConfigRef": map[string]any{"kind": "ClusterProviderConfig", "name": cluster},
		"forProvider": map[string]any{"manifest": map[string]any{
			"apiVersion": "v1",
			"kind":       "ConfigMap",
			"metadata": map[string]any{
				"name":      xr.Resource.GetName(),
				"namespace": namespace,
				"labels": map[string]any{
					"app.kubernetes.io/managed-by": "crossplane",
					"demo.moons.kingdon.ci/xr":     xr.Resource.GetNamespace() + "." + xr.Resource.GetName(),
				},
			},
			"data": payload,
		}},
	}); err != nil {
		response.Fatal(rsp, errors.Wrap(err, "cannot compose the Object"))
		return rsp, nil
	}

	desired := resource.NewDesiredComposed()
	desired.Resource = obj
	desired.Ready = resource.ReadyFalse
	if observed, ok := observedComposed(req)[objectName]; ok {
		if c := observed.Resource.GetCondition("Ready"); c.Status == "True" {
			desired.Ready = resource.ReadyTrue
		}
	}
	composedResources, err := request.GetDesiredComposedResources(req)
	if err != nil {
		response.Fatal(rsp, errors.Wrap(err, "cannot get the desired composed resources"))
		return rsp, nil
	}
	composedResources[objectName] = desired
	if err := response.SetDesiredComposedResources(rsp, composedResources); err != nil {
		response.Fatal(rsp, errors.Wrap(err, "cannot set the desired composed resources"))
		return rsp, nil
	}
	response.Normalf(rsp, "ConfigMap %s/%s composed for cluster %s", namespace, xr.Resource.GetName(), cluster)
	return rsp, nil
}

func observedComposed(req *fnv1.RunFunctionRequest) map[resource.Name]resource.ObservedComposed {
	observed, err := request.GetObservedComposedResources(req)
	if err != nil {
		return nil
	}
	return observed
}

func main() {
	address := flag.String("address", "127.0.0.1:9443", "address to serve RunFunctionRequests on")
	certs := flag.String("tls-certs-dir", "", "directory with tls.crt, tls.key and ca.crt (mTLS)")
	insecure := flag.Bool("insecure", false, "serve without mTLS (development only)")
	metrics := flag.String("metrics-address", "", "serve Prometheus metrics here (default off)")
	flag.Parse()
	err := function.Serve(fn{},
		function.Listen("tcp", *address),
		function.MTLSCertificates(*certs),
		function.Insecure(*insecure),
		function.WithMetricsServer(*metrics),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
