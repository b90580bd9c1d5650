-- JXC001 药品采购信息初始化: the counted opening stock, 科室备用药品 excluded.
-- Columns are the profile's logical names. Runs on the demo HIS schema (include/demo/generate_his.py).
SELECT 'CSH' || d.his_code || '-' || s.lot_no          AS serial_no,
       d.insurance_item_code                            AS insurance_item_code,
       d.name                                           AS hospital_item_name,
       d.mapping_serial_no                              AS mapping_serial_no,
       '0'                                              AS split_flag,
       d.pack_unit                                      AS unit,
       s.price                                          AS purchase_price,
       s.qty                                            AS quantity,
       s.counted_at                                     AS event_time,
       s.lot_no                                         AS lot_no,
       s.expiry_date                                    AS expiry_date,
       '盘点组'                                          AS operator_name
FROM opening_stock s
JOIN drug d ON d.drug_id = s.drug_id
WHERE s.dept_reserve = 0
ORDER BY d.drug_id, s.lot_no
