-- JXC003 药品出库信息上传 for one business day (dispensing with 拆零, 科室领用 23, 盘损 24, 报损 25).
SELECT o.bill_no || '-' || o.line_no                     AS serial_no,
       d.insurance_item_code                            AS insurance_item_code,
       d.name                                           AS hospital_item_name,
       d.mapping_serial_no                              AS mapping_serial_no,
       CAST(o.split AS TEXT)                            AS split_flag,
       CASE o.split WHEN 1 THEN d.min_unit ELSE d.pack_unit END AS unit,
       CASE o.split WHEN 1 THEN d.pack_ratio END        AS pack_ratio,
       o.operator                                       AS operator_name,
       o.kind                                           AS outbound_type,
       o.price                                          AS sale_price,
       o.qty                                            AS quantity,
       o.at                                             AS event_time,
       o.dept_code                                      AS dept_code,
       o.dept_name                                      AS dept_name,
       o.visit_no                                       AS visit_no,
       o.rx_no                                          AS prescription_no
FROM outbound_bill o
JOIN drug d ON d.drug_id = o.drug_id
WHERE substr(o.at, 1, 10) = '{{ business_date }}'
ORDER BY o.bill_no, o.line_no
