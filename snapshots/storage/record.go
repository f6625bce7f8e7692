package storage

import (
	"encoding/binary"
	"fmt"

	"github.com/berth-dev/berth/snapshots"
	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
)

// put writes rec into the bucket named after rec.info.Name, replacing
// whatever it held except its children.
func (tx *Tx) put(rec record) error {
	b, err := tx.b.CreateBucketIfNotExists([]byte(rec.info.Name))
	if err != nil {
		return err
	}
	created, err := rec.info.Created.MarshalBinary()
	if err != nil {
		return err
	}
	updated, err := rec.info.Updated.MarshalBinary()
	if err != nil {
		return err
	}
	for k, v := range map[string][]byte{
		string(keyID):      binary.AppendUvarint(nil, rec.id),
		string(keyKind):    {byte(rec.info.Kind)},
		string(keyParent):  []byte(rec.info.Parent),
		string(keyCreated): created,
		string(keyUpdated): updated,
		string(keySize):    binary.AppendVarint(nil, rec.usage.Size),
		string(keyInodes):  binary.AppendVarint(nil, rec.usage.Inodes),
	} {
		if err := b.Put([]byte(k), v); err != nil {
			return err
		}
	}
	return putLabels(b, rec.info.Labels)
}

func putLabels(b *bolt.Bucket, labels map[string]string) error {
	if b.Bucket(bucketLabels) != nil {
		if err := b.DeleteBucket(bucketLabels); err != nil {
			return err
		}
	}
	if len(labels) == 0 {
		return nil
	}
	lb, err := b.CreateBucket(bucketLabels)
	if err != nil {
		return err
	}
	for k, v := range labels {
		if err := lb.Put([]byte(k), []byte(v)); err != nil {
			return err
		}
	}
	return nil
}

// readRecord decodes the record of snapshot name from bucket b.
func readRecord(name string, b *bolt.Bucket) (record, error) {
	rec := record{
		id: readID(b),
		info: snapshots.Info{
			Kind:   readKind(b),
			Name:   name,
			Parent: string(b.Get(keyParent)),
		},
	}
	if err := rec.info.Created.UnmarshalBinary(b.Get(keyCreated)); err != nil {
		return record{}, fmt.Errorf("snapshot %q: creation time: %v: %w", name, err, errdefs.ErrDataLoss)
	}
	if err := rec.info.Updated.UnmarshalBinary(b.Get(keyUpdated)); err != nil {
		return record{}, fmt.Errorf("snapshot %q: update time: %v: %w", name, err, errdefs.ErrDataLoss)
	}
	rec.usage.Size, _ = binary.Varint(b.Get(keySize))
	rec.usage.Inodes, _ = binary.Varint(b.Get(keyInodes))
	if lb := b.Bucket(bucketLabels); lb != nil {
		rec.info.Labels = map[string]string{}
		err := lb.ForEach(func(k, v []byte) error {
			rec.info.Labels[string(k)] = string(v)
			return nil
		})
		if err != nil {
			return record{}, err
		}
	}
	return rec, nil
}
