-- Where the customer's request to cancel a confirmed order stands: REQUESTED until
-- delivery answers, REFUSED when the parcel was delivered first (a granted one shows as
-- the order's CANCELLED). Ranked like the statuses, so event order does not matter.
ALTER TABLE mypage_orders ADD COLUMN cancellation_status TEXT;
ALTER TABLE mypage_orders ADD COLUMN cancellation_rank INTEGER NOT NULL DEFAULT -1;
