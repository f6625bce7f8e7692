package metadata

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
)

// notFoundElsewhere builds the NotFound error for object name of kind in
// namespace ns. When the same object exists in other namespaces, the error
// names them: the commonest "I pulled it but the pod can't find it" case is
// an image pulled into "default" and looked for in "k8s.io".
func (db *DB) notFoundElsewhere(tx *bolt.Tx, ns, kind, name string, path ...[]byte) error {
	var others []string
	_ = tx.Bucket(bucketKeyVersion).ForEachBucket(func(k []byte) error {
		if string(k) == ns {
			return nil
		}
		full := append([][]byte{k}, path...)
		if b := bucket(tx, full[:len(full)-1]...); b != nil && (b.Bucket(full[len(full)-1]) != nil || b.Get(full[len(full)-1]) != nil) {
			others = append(others, string(k))
		}
		return nil
	})
	if len(others) == 0 {
		return fmt.Errorf("%s %q in namespace %q: %w", kind, name, ns, errdefs.ErrNotFound)
	}
	quoted := make([]string, len(others))
	for i, o := range others {
		quoted[i] = fmt.Sprintf("%q", o)
	}
	return fmt.Errorf("%s %q is not in namespace %q; it exists in namespace %s (namespaces are separate: use -n %s): %w",
		kind, name, ns, strings.Join(quoted, ", "), others[0], errdefs.ErrNotFound)
}
