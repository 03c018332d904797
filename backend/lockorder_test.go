package backend

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The checker catches an inversion: a token lock held, then a credential lock asked
// for. It panics before waiting, so the test never deadlocks, and the ranks the
// goroutine holds are as before.
func TestLockOrderCatchesInversion(t *testing.T) {
	if !lockOrderChecked {
		t.Skip("the lock order is checked in race builds (go test -race)")
	}
	b := newBackend(nil)
	err := b.tokens.withLock("a", func(tokenHeld) error {
		defer func() {
			r := recover()
			var le lockOrderError
			if e, ok := r.(error); !ok || !errors.As(e, &le) || le.want != rankCredential || le.held != rankToken {
				t.Errorf("recovered %v, want a lockOrderError credential-under-token", r)
			}
		}()
		unlock := b.credentials.lock("a")
		unlock()
		t.Error("a credential lock was taken under a token lock")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The order the engine keeps passes, and nothing stays recorded.
	unlockC := b.credentials.lock("a")
	unlockD := b.devices.lock("k1", "k2")
	_ = b.tokens.withLock("a", func(tokenHeld) error {
		var mu sync.Mutex
		lockRanked(rankConfig, &mu)()
		return nil
	})
	unlockD()
	unlockC()
	lockHeldEmpty(t)
}

// lockHeldEmpty fails when the checker still records a lock for this goroutine.
func lockHeldEmpty(t *testing.T) {
	t.Helper()
	// A lock of the outermost rank is allowed only when nothing later is held.
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("a lock is still recorded as held: %v", r)
		}
	}()
	var mu sync.Mutex
	lockRanked(rankConfigWrite, &mu)()
}

// A tokenHeld is made only by tokenStore.withLock, so a function that takes one runs
// under the name's token lock: the compiler checks the parameter, this test the one
// place that makes the value.
func TestTokenHeldOnlyFromWithLock(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			ast.Inspect(d, func(n ast.Node) bool {
				lit, isLit := n.(*ast.CompositeLit)
				if !isLit {
					return true
				}
				if id, isID := lit.Type.(*ast.Ident); isID && id.Name == "tokenHeld" {
					if !ok || fd.Name.Name != "withLock" || name != "tokenstore.go" {
						t.Errorf("%s: a tokenHeld is made outside tokenStore.withLock", fset.Position(lit.Pos()))
					}
				}
				return true
			})
		}
	}
}
