-- JXC004 药品实际库存信息上传: the actual stock of one business day, 科室备用药品 excluded.
SELECT 'KC' || replace(s.day, '-', '') || '-' || d.his_code AS serial_no,
       d.insurance_item_code                            AS insurance_item_code,
       d.name                                           AS hospital_item_name,
       d.mapping_serial_no                              AS mapping_serial_no,
       '0'                                              AS split_flag,
       d.pack_unit                                      AS unit,
       s.day                                            AS stock_date,
       s.qty                                            AS stock_quantity,
       s.price                                          AS purchase_price
FROM stock_snapshot s
JOIN drug d ON d.drug_id = s.drug_id
WHERE s.day = '{{ business_date }}'
ORDER BY d.drug_id
