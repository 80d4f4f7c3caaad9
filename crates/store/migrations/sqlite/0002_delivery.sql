-- Delivery: a lease on each claimed recipient (a crashed worker's claim expires), and
-- the exchanger that last answered.
ALTER TABLE recipients ADD COLUMN lease_until INTEGER;
ALTER TABLE recipients ADD COLUMN last_mx TEXT;
