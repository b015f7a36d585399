-- Verified onboarding (issue 12): the onboarding record is bounded. Each
-- spoke keeps its 1,000 most recent steps (the API serves the 500 most
-- recent); an older one goes when a new one is written, so an IdP that
-- flaps for months cannot grow the table without limit.
CREATE OR REPLACE FUNCTION spoke_conditions_step() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT'
       OR NEW.status IS DISTINCT FROM OLD.status
       OR NEW.reason IS DISTINCT FROM OLD.reason
       OR NEW.observed_generation IS DISTINCT FROM OLD.observed_generation THEN
        INSERT INTO spoke_steps (spoke_id, type, status, reason, message, observed_generation)
        VALUES (NEW.spoke_id, NEW.type, NEW.status, NEW.reason, NEW.message, NEW.observed_generation);
        DELETE FROM spoke_steps
         WHERE spoke_id = NEW.spoke_id
           AND id <= (SELECT id FROM spoke_steps WHERE spoke_id = NEW.spoke_id
                       ORDER BY id DESC OFFSET 1000 LIMIT 1);
    END IF;
    RETURN NULL;
END;
$$;
