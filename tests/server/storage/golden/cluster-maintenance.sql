ALTER TABLE events_local ON CLUSTER 'uptake' MODIFY TTL toDateTime(occurred_at) + INTERVAL 396 DAY;

ALTER TABLE failed_events_local ON CLUSTER 'uptake' MODIFY TTL toDateTime(received_at) + INTERVAL 30 DAY;

ALTER TABLE kpi_user_hours_local ON CLUSTER 'uptake' MODIFY TTL hour + INTERVAL 1096 DAY;

ALTER TABLE kpi_user_days_local ON CLUSTER 'uptake' MODIFY TTL day + INTERVAL 1096 DAY;

ALTER TABLE events_local ON CLUSTER 'uptake' DELETE WHERE user_id = toFixedString(unhex('00112233445566778899aabbccddeeff'), 16);

ALTER TABLE kpi_user_hours_local ON CLUSTER 'uptake' DELETE WHERE user_id = toFixedString(unhex('00112233445566778899aabbccddeeff'), 16);

ALTER TABLE kpi_user_days_local ON CLUSTER 'uptake' DELETE WHERE user_id = toFixedString(unhex('00112233445566778899aabbccddeeff'), 16);

ALTER TABLE kpi_first_seen_local ON CLUSTER 'uptake' DELETE WHERE user_id = toFixedString(unhex('00112233445566778899aabbccddeeff'), 16);

ALTER TABLE failed_events_local ON CLUSTER 'uptake' DELETE WHERE JSONExtractString(payload, 'user_id') = '00112233445566778899aabbccddeeff';

