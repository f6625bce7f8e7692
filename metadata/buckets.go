package metadata

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketKeyVersion     = []byte("v1")
	bucketKeyLabels      = []byte("labels")
	bucketKeyImages      = []byte("images")
	bucketKeyContent     = []byte("content")
	bucketKeyBlob        = []byte("blob")
	bucketKeyIngests     = []byte("ingests")
	bucketKeyLeases      = []byte("leases")
	bucketKeyTarget      = []byte("target")
	bucketKeyAnnotations = []byte("annotations")
	bucketKeySnapshots   = []byte("snapshots")

	keyCreatedAt = []byte("createdat")
	keyUpdatedAt = []byte("updatedat")
	keySize      = []byte("size")
	keyMediaType = []byte("mediatype")
	keyDigest    = []byte("digest")
	keyRef       = []byte("ref")
	keyExpected  = []byte("expected")
	keyTotal     = []byte("total")
)

// bucket returns the nested bucket at path from the root, or nil.
func bucket(tx *bolt.Tx, path ...[]byte) *bolt.Bucket {
	b := tx.Bucket(bucketKeyVersion)
	for _, p := range path {
		if b == nil {
			return nil
		}
		b = b.Bucket(p)
	}
	return b
}

// createBucket returns the nested bucket at path, creating what is missing.
func createBucket(tx *bolt.Tx, path ...[]byte) (*bolt.Bucket, error) {
	b, err := tx.CreateBucketIfNotExists(bucketKeyVersion)
	if err != nil {
		return nil, err
	}
	for _, p := range path {
		if b, err = b.CreateBucketIfNotExists(p); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func writeTimestamps(b *bolt.Bucket, created, updated time.Time) error {
	for k, t := range map[string]time.Time{string(keyCreatedAt): created, string(keyUpdatedAt): updated} {
		if t.IsZero() {
			continue
		}
		v, err := t.MarshalBinary()
		if err != nil {
			return err
		}
		if err := b.Put([]byte(k), v); err != nil {
			return err
		}
	}
	return nil
}

func readTimestamp(b *bolt.Bucket, key []byte) time.Time {
	var t time.Time
	if v := b.Get(key); v != nil {
		_ = t.UnmarshalBinary(v)
	}
	return t
}

func writeInt(b *bolt.Bucket, key []byte, n int64) error {
	buf := make([]byte, binary.MaxVarintLen64)
	return b.Put(key, buf[:binary.PutVarint(buf, n)])
}

func readInt(b *bolt.Bucket, key []byte) int64 {
	n, _ := binary.Varint(b.Get(key))
	return n
}

// writeMap replaces the sub-bucket name of b with the entries of m.
func writeMap(b *bolt.Bucket, name []byte, m map[string]string) error {
	if b.Bucket(name) != nil {
		if err := b.DeleteBucket(name); err != nil {
			return err
		}
	}
	if len(m) == 0 {
		return nil
	}
	mb, err := b.CreateBucket(name)
	if err != nil {
		return err
	}
	for k, v := range m {
		if v == "" {
			continue
		}
		if err := mb.Put([]byte(k), []byte(v)); err != nil {
			return fmt.Errorf("set %s %q: %w", name, k, err)
		}
	}
	return nil
}

func readMap(b *bolt.Bucket, name []byte) map[string]string {
	mb := b.Bucket(name)
	if mb == nil {
		return nil
	}
	m := map[string]string{}
	_ = mb.ForEach(func(k, v []byte) error {
		m[string(k)] = string(v)
		return nil
	})
	return m
}

// applyMapPaths merges the fields named by paths ("labels", "labels.KEY")
// from src into dst and returns the result; prefix is "labels" or
// "annotations".
func applyMapPaths(prefix string, dst, src map[string]string, paths []string) (map[string]string, bool, error) {
	touched := false
	for _, p := range paths {
		switch {
		case p == prefix:
			dst, touched = copyMap(src), true
		case len(p) > len(prefix)+1 && p[:len(prefix)+1] == prefix+".":
			key := p[len(prefix)+1:]
			if dst == nil {
				dst = map[string]string{}
			}
			if v, ok := src[key]; ok && v != "" {
				dst[key] = v
			} else {
				delete(dst, key)
			}
			touched = true
		}
	}
	return dst, touched, nil
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func notFound(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, errdefs.ErrNotFound)...)
}
