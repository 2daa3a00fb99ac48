-- Up Migration
-- The visit counter, its request-id record and the batch counting function. Written so that it
-- also adopts a database whose replicas created these objects before migrations existed.

CREATE TABLE IF NOT EXISTS visit_counter (
  id smallint PRIMARY KEY CHECK (id = 1),
  count bigint NOT NULL CHECK (count >= 0),
  version bigint NOT NULL
);

INSERT INTO visit_counter (id, count, version) VALUES (1, 0, 0) ON CONFLICT (id) DO NOTHING;

CREATE TABLE IF NOT EXISTS counted_requests (
  request_id text PRIMARY KEY,
  count bigint NOT NULL,
  counted_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS counted_requests_counted_at ON counted_requests (counted_at);

-- One batch of visits in one statement: the counter's row is locked only while Postgres runs it
-- and commits, never across round trips to a replica whose event loop is busy serving. In a
-- function each statement reads a fresh snapshot, so ids counted by a batch that held the lock
-- just before are seen (a single plain statement would read them from before its lock wait).
CREATE OR REPLACE FUNCTION count_visits(request_ids text[])
RETURNS TABLE (ordinal integer, visit_count bigint, visit_version bigint, duplicate boolean)
LANGUAGE plpgsql AS $fn$
DECLARE
  base_count bigint;
  base_version bigint;
  added bigint := 0;
  original bigint;
  i integer;
BEGIN
  SELECT c.count, c.version INTO base_count, base_version FROM visit_counter c WHERE c.id = 1 FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'visit_counter row is missing';
  END IF;
  FOR i IN 1 .. coalesce(array_length(request_ids, 1), 0) LOOP
    original := NULL;
    IF request_ids[i] IS NOT NULL THEN
      SELECT r.count INTO original FROM counted_requests r WHERE r.request_id = request_ids[i];
    END IF;
    IF original IS NOT NULL THEN
      -- Version -1: nothing changed, so there is nothing newer for the cache.
      RETURN QUERY SELECT i, original, -1::bigint, true;
    ELSE
      added := added + 1;
      IF request_ids[i] IS NOT NULL THEN
        INSERT INTO counted_requests (request_id, count) VALUES (request_ids[i], base_count + added);
      END IF;
      RETURN QUERY SELECT i, base_count + added, base_version + added, false;
    END IF;
  END LOOP;
  IF added > 0 THEN
    UPDATE visit_counter SET count = count + added, version = version + added WHERE id = 1;
  END IF;
END
$fn$;
