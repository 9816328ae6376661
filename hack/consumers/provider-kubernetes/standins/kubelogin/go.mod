module github.com/Azure/kubelogin

go 1.26.0
