package metadata

// WritesForTest is the number of page writes the database has made, for
// tests that check a transaction left the file alone.
func (db *DB) WritesForTest() int64 {
	st := db.bolt.Stats()
	return st.TxStats.GetWrite()
}
