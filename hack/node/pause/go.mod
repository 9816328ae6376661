module github.com/kingdonb/moonlander/hack/node/pause

go 1.26.0
