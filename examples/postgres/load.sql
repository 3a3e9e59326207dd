-- A resumable load into PostgreSQL, run by psql: copies `shakedown.rows` rows
-- into `items`, `shakedown.batch` at a time, keeping how far it got in
-- `progress`. Run again after an interruption, it goes on from there.
--
--   psql -v ON_ERROR_STOP=1 -c "SET shakedown.rows = 1000" ... -f load.sql
--
-- Correct: each batch's rows and its progress commit in one transaction, so
-- a kill anywhere loses or repeats nothing. Two bugs can be switched on with
-- `SET shakedown.bug = ...`:
--   checkpoint-first   the progress commits before the rows (the classic
--                      "checkpoint, then work" bug): a kill between them
--                      skips the batch.
--   unlocked-progress  progress is read without a lock: the transaction of a
--                      killed psql still runs in the server for a moment, the
--                      resume reads the old progress beside it, and both
--                      insert the batch.
CREATE TABLE IF NOT EXISTS items (id int NOT NULL, name text NOT NULL, qty int NOT NULL);
CREATE TABLE IF NOT EXISTS progress (one int PRIMARY KEY CHECK (one = 1), done int NOT NULL);
INSERT INTO progress VALUES (1, 0) ON CONFLICT DO NOTHING;

DO $$
DECLARE
  n int := current_setting('shakedown.rows')::int;
  size int := current_setting('shakedown.batch')::int;
  bug text := current_setting('shakedown.bug', true);
  done int;
  upto int;
BEGIN
  LOOP
    IF bug = 'unlocked-progress' THEN
      SELECT p.done INTO done FROM progress p;
    ELSE
      -- Locked: a killed psql's transaction lives on in the server until it
      -- notices, and a resume must wait for it rather than redo its batch.
      SELECT p.done INTO done FROM progress p FOR UPDATE;
    END IF;
    EXIT WHEN done >= n;
    upto := least(done + size, n);
    IF bug = 'checkpoint-first' THEN
      UPDATE progress SET done = upto;
      COMMIT;
    END IF;
    INSERT INTO items SELECT g, 'item-' || g, g % 7 FROM generate_series(done + 1, upto) g;
    -- The batch's work: where most interruptions land.
    PERFORM pg_sleep(0.02);
    UPDATE progress SET done = upto;
    COMMIT;
  END LOOP;
END $$;
